"""JSON shapes of the quality endpoints (the records' payloads and the report are
``ledger.protocol.quality``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ledger.protocol.log import Appended
from ledger.protocol.quality import QualitySummary


class QualityReportPublic(BaseModel):
    report_sm3: str = Field(description="Hex SM3 of the report's canonical bytes.")
    listing_id: str
    version: int
    signer: str = Field(description="Key id of the participant that signed the report.")
    signer_role: str = Field(examples=["provider"], description="provider or assessor.")
    grade: str = Field(examples=["A"])
    score_bps: int
    reported_at: int
    leaf_hash: str = Field(description="Leaf hash of the quality.reported record.")
    countersigned_by: list[str] = Field(
        description="Assessors that countersigned this (provider) report."
    )
    report: dict[str, Any] = Field(
        description="The report (ledger.protocol.quality.QualityReport.to_dict())."
    )


class QualityView(BaseModel):
    listing_id: str
    version: int = Field(description="The listing's current version.")
    quality: QualitySummary | None = Field(
        description="The current version's newest provider report, countersignatures "
        "and disputes (null: no report)."
    )
    reports: list[QualityReportPublic] = Field(
        description="Every report on every version, newest version first (at most 200)."
    )


class QualityReportedOut(BaseModel):
    report: QualityReportPublic
    log: Appended


class QualityCountersignedOut(BaseModel):
    listing_id: str
    version: int
    report_sm3: str
    assessor: str
    log: Appended
