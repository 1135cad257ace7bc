"""Typed answers of the quality endpoints (docs/quality.md): frozen dataclasses with
``from_dict``, strict about what the SDK relies on and tolerant of added fields (as
:mod:`clients.sdk.market_models`). A report is parsed with
:class:`ledger.protocol.quality.QualityReport`, so its numbers are checked too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients.sdk.models import Appended
from ledger.protocol.quality import QualityReport, QualitySummary
from ledger.protocol.reader import JSONObject

__all__ = [
    "Assessment",
    "ListingQuality",
    "QualityCountersignature",
    "QualityReportInfo",
    "QualitySummary",
]


class _Obj(JSONObject):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class QualityReportInfo:
    """A signed report as the exchange keeps it (``log`` on the answer to publishing)."""

    report_sm3: str
    listing_id: str
    version: int
    signer: str
    signer_role: str
    grade: str
    reported_at: int
    leaf_hash: str
    countersigned_by: tuple[str, ...]
    report: QualityReport
    log: Appended | None = None

    @classmethod
    def from_dict(
        cls, data: Any, where: str = "report", log: Appended | None = None
    ) -> QualityReportInfo:
        o = _Obj(data, where)
        return cls(
            report_sm3=o.hex64("report_sm3"),
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            signer=o.hex64("signer"),
            signer_role=o.text("signer_role"),
            grade=o.text("grade"),
            reported_at=o.integer("reported_at"),
            leaf_hash=o.hex64("leaf_hash"),
            countersigned_by=o.strings("countersigned_by"),
            report=QualityReport.from_dict(o.raw("report"), o.path("report")),
            log=log,
        )

    @classmethod
    def from_changed(cls, data: Any) -> QualityReportInfo:
        """``{"report", "log"}``: the answer to publishing a report."""
        o = _Obj(data, "")
        log = Appended.from_dict(o.raw("log"), path="log")
        return cls.from_dict(o.raw("report"), "report", log=log)


@dataclass(frozen=True, slots=True)
class ListingQuality:
    """``GET /listings/{id}/quality``: the current quality and every report."""

    listing_id: str
    version: int
    quality: QualitySummary | None
    reports: tuple[QualityReportInfo, ...]

    @classmethod
    def from_dict(cls, data: Any) -> ListingQuality:
        o = _Obj(data, "")
        return cls(
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            quality=QualitySummary.from_dict(o.raw("quality")) if o.has("quality") else None,
            reports=o.items("reports", QualityReportInfo.from_dict),
        )

    def current_report(self) -> QualityReportInfo | None:
        """The provider report the listing shows (``None``: none)."""
        if self.quality is None:
            return None
        for info in self.reports:
            if info.report_sm3 == self.quality.report_digest and info.signer_role == "provider":
                return info
        return None


@dataclass(frozen=True, slots=True)
class QualityCountersignature:
    listing_id: str
    version: int
    report_sm3: str
    assessor: str
    log: Appended | None = None

    @classmethod
    def from_changed(cls, data: Any) -> QualityCountersignature:
        o = _Obj(data, "")
        return cls(
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            report_sm3=o.hex64("report_sm3"),
            assessor=o.hex64("assessor"),
            log=Appended.from_dict(o.raw("log"), path="log"),
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """An assessor's assessment of a listing: the zero-price order it received the
    data through, the provider's report and the one it recomputed; ``agreed`` when
    they are the same bytes (it countersigned), else it signed its own report."""

    order_id: str
    provider_report: QualityReportInfo
    recomputed: QualityReport
    agreed: bool
    log: Appended
