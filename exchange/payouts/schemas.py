"""Payloads of the withdrawal records and the JSON shapes of the withdrawals API.

* ``withdrawal.requested`` (the participant): ``{"withdrawal_id": <new UUID>,
  "amount": fen, "destination": "<where the money goes outside>"}``; an operator
  withdraws the exchange's fees with ``"account": "platform"`` added (the
  platform account is the only one an operator withdraws from);
* ``withdrawal.paid`` (an operator): ``{"withdrawal_id", "reference": "<the
  outside transfer's reference>"}``;
* ``withdrawal.rejected`` (an operator): ``{"withdrawal_id", "reason"}``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from exchange.accounts.schemas import AccountPublic, Fen
from ledger.protocol.log import Appended

WITHDRAWAL_REQUESTED: Final = "withdrawal.requested"
WITHDRAWAL_PAID: Final = "withdrawal.paid"
WITHDRAWAL_REJECTED: Final = "withdrawal.rejected"

WithdrawalId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
"""A lowercase UUID, as ``str(uuid.uuid4())`` writes it (the shape of order ids too)."""


class WithdrawalRequested(BaseModel):
    """``withdrawal.requested``, signed by the participant who withdraws."""

    model_config = ConfigDict(extra="forbid", strict=True)

    withdrawal_id: WithdrawalId
    amount: Fen
    destination: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    account: Literal["platform"] | None = None
    """``"platform"``: an operator withdraws the exchange's fees; absent: the signer's own."""


class WithdrawalPaid(BaseModel):
    """``withdrawal.paid``, signed by an operator once the money was sent."""

    model_config = ConfigDict(extra="forbid", strict=True)

    withdrawal_id: WithdrawalId
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class WithdrawalRejected(BaseModel):
    """``withdrawal.rejected``, signed by an operator: the amount goes back to available."""

    model_config = ConfigDict(extra="forbid", strict=True)

    withdrawal_id: WithdrawalId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class WithdrawalPublic(BaseModel):
    id: str
    participant: str = Field(
        description="Key id of the participant who withdraws, or platform (the fees)."
    )
    amount: int = Field(description="Fen.")
    destination: str
    state: str = Field(examples=["pending"], description="pending, paid or rejected.")
    requested_at: int
    requested_leaf_hash: str = Field(description="Hex leaf hash of withdrawal.requested.")
    decided_at: int | None
    decided_by: str | None = Field(description="The deciding operator's key id.")
    decision_leaf_hash: str | None = Field(
        description="Hex leaf hash of withdrawal.paid or withdrawal.rejected."
    )
    transfer_reference: str | None = Field(description="Paid: the outside transfer's reference.")
    reason: str | None = Field(description="Rejected: why.")


class WithdrawalChanged(BaseModel):
    withdrawal: WithdrawalPublic
    account: AccountPublic = Field(
        description="The balances of the account withdrawn from right after this change."
    )
    log: Appended


class WithdrawalPage(BaseModel):
    items: list[WithdrawalPublic] = Field(description="Newest first.")
    next_offset: int | None
