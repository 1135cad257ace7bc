"""Payload of ``deposit.credited`` and the JSON shapes of the accounts API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from exchange.pricing import MAX_AMOUNT_FEN
from ledger.protocol.accounts import Balance
from ledger.protocol.log import Appended

KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Fen = Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT_FEN, examples=[100_000])]


class DepositPayload(BaseModel):
    """``deposit.credited``, signed by an operator: credit ``amount`` fen to
    ``participant``; ``reference`` names the outside payment (bank transfer id)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    participant: KeyId
    amount: Fen
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)]


@dataclass(frozen=True, slots=True)
class AccountPublic(Balance):
    # The shape the SDK parses (ledger.protocol.accounts.Balance), under the
    # name the OpenAPI document has always given it.
    pass


class MovementPublic(BaseModel):
    id: int
    kind: str = Field(examples=["escrow_hold"])
    amount: int
    available_delta: int
    held_delta: int
    order_id: str | None
    reference: str | None
    leaf_hash: str = Field(description="Hex leaf hash of the log record behind the movement.")
    created_at: int


class AccountView(BaseModel):
    account: AccountPublic
    movements: list[MovementPublic] = Field(description="Most recent first.")


class DepositCredited(BaseModel):
    account: AccountPublic
    movement: MovementPublic
    log: Appended
