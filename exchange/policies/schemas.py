"""Payload and JSON shapes of cross-border assessments.

Record ``crossborder.assessed`` (signed by an operator): ``{"listing_id": uuid,
"buyer": key id, "approved": bool, "reference": str, "valid_until": ms | null}``.
An approval needs ``valid_until`` (after the record's timestamp); a rejection has
none. Each record replaces the previous decision for that listing and buyer.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from exchange.listings.schemas import KeyId, ListingId
from ledger.protocol.log import Appended


class AssessmentPayload(BaseModel):
    """``crossborder.assessed``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    listing_id: ListingId
    buyer: KeyId
    approved: StrictBool
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="The assessment's reference (e.g. the CAC security-assessment filing)."
    )
    valid_until: Annotated[StrictInt, Field(ge=0, le=2**53 - 1)] | None = Field(
        default=None,
        description="Until when (ms, exclusive) an approval holds; null for a rejection.",
    )


class AssessmentPublic(BaseModel):
    listing_id: str
    buyer: str
    approved: bool
    reference: str
    valid_until: int | None
    assessed_at: int = Field(description="The record's timestamp (ms).")
    operator: str = Field(description="Key id of the operator that recorded it.")
    leaf_hash: str = Field(description="Leaf hash of the crossborder.assessed record.")


class AssessmentRecorded(BaseModel):
    assessment: AssessmentPublic
    log: Appended


class AssessmentPage(BaseModel):
    items: list[AssessmentPublic]
    next_offset: int | None
