"""The quality calls (docs/quality.md), built once for both clients like
:mod:`clients.sdk._marketplace`: a provider publishes the report it computed where
the data lives (:func:`clients.quality.compute_report`), an assessor countersigns
it, or signs its own; anyone reads a listing's reports.

An assessment (:meth:`~clients.sdk.ExchangeClient.assess`) is: the listing's
current provider report; a zero-price assessment order (terms ``purpose:
"assessment"``); the data received and checked like any delivery
(:meth:`~clients.sdk.ExchangeClient.receive`); the report recomputed with the
provider's schema, update frequency and ``as_of``; the same digest countersigned,
or the differing report signed.
"""

from __future__ import annotations

from pathlib import Path

from clients.sdk._base import Call, _parsed
from clients.sdk._marketplace import MarketplaceCalls
from clients.sdk.errors import APIError, ClientError
from clients.sdk.quality_models import (
    ListingQuality,
    QualityCountersignature,
    QualityReportInfo,
)
from ledger.protocol.quality import QUALITY_COUNTERSIGNED, QUALITY_REPORTED, QualityReport

__all__ = ["ASSESSMENT_TERMS", "NotReportedError", "QualityCalls", "recompute", "still_undelivered"]

ASSESSMENT_TERMS = {"purpose": "assessment"}
"""The quote terms of an assessment order (an approved assessor's, at 0 fen)."""


NOT_DELIVERED = "not_delivered"


class NotReportedError(ClientError):
    """The listing's current version has no provider report to assess."""


def still_undelivered(exc: APIError) -> bool:
    """Whether an answer to ``GET /orders/{id}/delivery`` says: not yet."""
    return exc.code == NOT_DELIVERED


def recompute(path: Path, provider: QualityReport, data_format: str) -> QualityReport:
    """The report on the received bytes with the provider's schema, frequency and as_of."""
    from clients.quality import compute_report  # (DuckDB: loaded only to assess)

    return compute_report(
        path,
        provider.table_schema,
        update_frequency=provider.update_frequency,
        as_of=provider.as_of,
        format=data_format,
    )


class QualityCalls(MarketplaceCalls):
    """Call builders of the quality API (no I/O)."""

    def _report_quality_call(
        self, listing_id: str, version: int, report: QualityReport
    ) -> Call[QualityReportInfo]:
        payload = {
            "listing_id": listing_id,
            "version": version,
            "report": report.to_dict(),
            "report_sm3": report.digest(),
        }
        return self._action(
            "POST",
            f"/listings/{listing_id}/quality-reports",
            QUALITY_REPORTED,
            payload,
            QualityReportInfo.from_changed,
            ok=(201,),
        )

    def _countersign_call(
        self, listing_id: str, version: int, report_sm3: str
    ) -> Call[QualityCountersignature]:
        payload = {"listing_id": listing_id, "version": version, "report_sm3": report_sm3}
        return self._action(
            "POST",
            f"/listings/{listing_id}/quality-reports/{report_sm3}/countersignatures",
            QUALITY_COUNTERSIGNED,
            payload,
            QualityCountersignature.from_changed,
            ok=(201,),
        )

    def _listing_quality_call(self, listing_id: str) -> Call[ListingQuality]:
        return Call(
            "GET",
            f"/listings/{listing_id}/quality",
            _parsed(ListingQuality.from_dict),
            signed=self._optional_auth(),
        )
