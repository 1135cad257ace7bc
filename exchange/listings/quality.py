"""Quality reports of listing versions (docs/quality.md): their tables and what a
listing shows of them. Writing them is :mod:`exchange.quality` (signed records).

* ``quality_report``: one row per accepted ``quality.reported`` record (a
  provider's report on a version, or an assessor's differing one), with the
  report's SM3, grade and score and the report itself.
* ``quality_countersignature``: one row per ``quality.countersigned`` record: an
  assessor recomputed a provider's report and got the same bytes.

A listing's quality (:func:`quality_summary`) is its current version's current
report (:func:`current_reports`: the newest provider report, by
:func:`ledger.protocol.quality.current_report`, the rule the reference price's
grades and their public replay use too): its grade, digest, signer, the
assessors that countersigned that digest and those that signed a different
report on the version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, UniqueConstraint, select
from sqlmodel import Field, Session, SQLModel, col

from exchange.log.models import LogEntry
from ledger.protocol.quality import QualitySummary
from ledger.protocol.quality import current_report as newest

__all__ = [
    "QualityCountersignature",
    "QualityReportRow",
    "QualitySummary",
    "SignerRole",
    "current_report",
    "current_reports",
    "quality_summaries",
    "quality_summary",
]


class SignerRole(StrEnum):
    PROVIDER = "provider"
    ASSESSOR = "assessor"


class QualityReportRow(SQLModel, table=True):
    __tablename__ = "quality_report"
    __table_args__ = (
        UniqueConstraint(
            "listing_id", "version", "report_sm3", "signer_key_id", name="uq_quality_report"
        ),
    )

    leaf_hash: str = Field(primary_key=True, max_length=64)
    """Hex leaf hash of the ``quality.reported`` record."""
    listing_id: str = Field(index=True, max_length=36)
    version: int
    report_sm3: str = Field(index=True, max_length=64)
    signer_key_id: str = Field(max_length=64)
    signer_role: str = Field(max_length=16)
    grade: str = Field(max_length=1)
    score_bps: int
    report: dict[str, Any] = Field(sa_type=JSON)
    reported_at: int = Field(sa_type=BigInteger)


class QualityCountersignature(SQLModel, table=True):
    __tablename__ = "quality_countersignature"

    listing_id: str = Field(primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    report_sm3: str = Field(primary_key=True, max_length=64)
    assessor_key_id: str = Field(primary_key=True, max_length=64)
    leaf_hash: str = Field(max_length=64)
    """Hex leaf hash of the ``quality.countersigned`` record."""
    countersigned_at: int = Field(sa_type=BigInteger)


def current_reports(
    session: Session, versions: Collection[tuple[str, int]], log_size: int | None = None
) -> dict[tuple[str, int], QualityReportRow]:
    """The current provider report of each ``(listing_id, version)`` that has one, by
    :func:`ledger.protocol.quality.current_report` (the newest). With ``log_size``,
    only reports whose record is within the log's first ``log_size`` entries count
    (an answer computed as of that log size)."""
    wanted = set(versions)
    if not wanted:
        return {}
    query = select(QualityReportRow).where(
        col(QualityReportRow.listing_id).in_(sorted({lid for lid, _ in wanted})),
        col(QualityReportRow.signer_role) == SignerRole.PROVIDER.value,
    )
    rows = [
        row for row in session.execute(query).scalars() if (row.listing_id, row.version) in wanted
    ]
    if log_size is not None and rows:
        logged = {
            bytes(leaf).hex()
            for leaf in session.execute(
                select(col(LogEntry.leaf_hash)).where(
                    col(LogEntry.leaf_hash).in_([bytes.fromhex(r.leaf_hash) for r in rows]),
                    col(LogEntry.index) < log_size,
                )
            ).scalars()
        }
        rows = [row for row in rows if row.leaf_hash in logged]
    by_version: dict[tuple[str, int], list[QualityReportRow]] = {}
    for row in rows:
        by_version.setdefault((row.listing_id, row.version), []).append(row)
    found = {key: newest(reports) for key, reports in by_version.items()}
    return {key: row for key, row in found.items() if row is not None}


def current_report(session: Session, listing_id: str, version: int) -> QualityReportRow | None:
    """The current provider report on ``version`` (``None``: none)."""
    return current_reports(session, {(listing_id, version)}).get((listing_id, version))


def countersigners(session: Session, listing_id: str, version: int, report_sm3: str) -> list[str]:
    return list(
        session.execute(
            select(col(QualityCountersignature.assessor_key_id))
            .where(
                col(QualityCountersignature.listing_id) == listing_id,
                col(QualityCountersignature.version) == version,
                col(QualityCountersignature.report_sm3) == report_sm3,
            )
            .order_by(col(QualityCountersignature.countersigned_at), "assessor_key_id")
        ).scalars()
    )


def quality_summary(session: Session, listing_id: str, version: int) -> QualitySummary | None:
    """The listing's quality as :class:`QualitySummary`, ``None`` without a provider report."""
    return quality_summaries(session, [(listing_id, version)]).get((listing_id, version))


def quality_summaries(
    session: Session, versions: Collection[tuple[str, int]]
) -> dict[tuple[str, int], QualitySummary]:
    """:func:`quality_summary` of each ``(listing_id, version)`` that has a provider
    report, in three queries however many they are."""
    currents = current_reports(session, versions)
    if not currents:
        return {}
    listing_ids = sorted({listing_id for listing_id, _ in currents})
    disputed: dict[tuple[str, int], list[str]] = defaultdict(list)
    for listing_id, version, signer, digest in session.execute(
        select(
            col(QualityReportRow.listing_id),
            col(QualityReportRow.version),
            col(QualityReportRow.signer_key_id),
            col(QualityReportRow.report_sm3),
        )
        .where(
            col(QualityReportRow.listing_id).in_(listing_ids),
            col(QualityReportRow.signer_role) == SignerRole.ASSESSOR.value,
        )
        .order_by(col(QualityReportRow.reported_at), col(QualityReportRow.signer_key_id))
    ):
        current = currents.get((listing_id, version))
        if current is not None and digest != current.report_sm3:
            disputed[listing_id, version].append(signer)
    countersigned: dict[tuple[str, int], list[str]] = defaultdict(list)
    for listing_id, version, assessor, digest in session.execute(
        select(
            col(QualityCountersignature.listing_id),
            col(QualityCountersignature.version),
            col(QualityCountersignature.assessor_key_id),
            col(QualityCountersignature.report_sm3),
        )
        .where(col(QualityCountersignature.listing_id).in_(listing_ids))
        .order_by(col(QualityCountersignature.countersigned_at), "assessor_key_id")
    ):
        current = currents.get((listing_id, version))
        if current is not None and digest == current.report_sm3:
            countersigned[listing_id, version].append(assessor)
    return {
        key: QualitySummary(
            grade=current.grade,
            score_bps=current.score_bps,
            report_digest=current.report_sm3,
            signed_by=current.signer_key_id,
            countersigned_by=tuple(countersigned[key]),
            disputed_by=tuple(dict.fromkeys(disputed[key])),
        )
        for key, current in currents.items()
    }
