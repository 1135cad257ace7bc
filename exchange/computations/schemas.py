"""JSON shapes of the computation endpoints (the records' payloads are
``ledger.protocol.computation``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ledger.protocol.log import Appended


class LoggedRecord(BaseModel):
    """A signed record as the log holds it, and where."""

    index: int = Field(description="Its log index.")
    record: dict[str, Any] = Field(
        description='`{"record": {...}, "signature": base64}` as GET /log/entries shows it.'
    )


class ComputationPublic(BaseModel):
    id: str
    order_id: str
    listing_id: str
    version: int
    buyer: str
    sql: str
    query_sm3: str = Field(description="Hex SM3 of the SQL's UTF-8 bytes.")
    state: str = Field(examples=["pending"], description="pending, completed or refused.")
    epsilon_reserved: str = Field(description="ε the query takes from the order (decimal).")
    requested_at: int
    answered_at: int | None
    reason: str | None = Field(description="Why the provider refused it (refused only).")
    result_sm3: str | None
    ciphertext_sm3: str | None
    ciphertext_size: int | None
    rows_scanned: int | None
    records: list[LoggedRecord] = Field(
        description="The buyer's computation.requested and, once answered, the provider's "
        "computation.completed or computation.refused."
    )


class ComputationRequested(BaseModel):
    computation: ComputationPublic
    log: Appended


class ComputationAnswered(BaseModel):
    computation: ComputationPublic
    log: Appended = Field(description="The provider's record.")


class ResultUploaded(BaseModel):
    computation_id: str
    ciphertext_sm3: str
    ciphertext_size: int


class ComputationPage(BaseModel):
    items: list[ComputationPublic]
    next_offset: int | None
