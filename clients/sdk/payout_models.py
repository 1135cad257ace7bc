"""Typed answers of ``/withdrawals`` (payouts): frozen dataclasses with ``from_dict``,
strict about what the SDK relies on and tolerant of fields it does not know (as
:mod:`clients.sdk.market_models`). Money in integer fen, times in ms since the epoch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from clients.sdk.models import Appended
from ledger.protocol.accounts import PLATFORM_ACCOUNT, Balance
from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError

__all__ = ["WITHDRAWAL_STATES", "Withdrawal", "WithdrawalPage"]

WITHDRAWAL_STATES: Final = frozenset({"pending", "paid", "rejected"})


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A participant's withdrawal of ``amount`` fen to ``destination`` (``participant``
    is ``platform`` for the exchange's fees, which operators withdraw): ``pending``
    (the amount held) until an operator records it ``paid`` (``transfer_reference``)
    or ``rejected`` (``reason``; the amount available again). After a writing call,
    ``account`` holds the withdrawer's balances right after it and ``log`` the
    record's receipt, checked by the client."""

    id: str
    participant: str
    amount: int
    destination: str
    state: str
    requested_at: int
    requested_leaf_hash: str
    decided_at: int | None
    decided_by: str | None
    decision_leaf_hash: str | None
    transfer_reference: str | None
    reason: str | None
    account: Balance | None = None
    log: Appended | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Withdrawal:
        o = JSONObject(data, where)
        decided_by = o.opt_text("decided_by")
        decision = o.opt_text("decision_leaf_hash")
        return cls(
            id=o.text("id"),
            participant=(
                PLATFORM_ACCOUNT
                if o.data.get("participant") == PLATFORM_ACCOUNT
                else o.hex64("participant")
            ),
            amount=o.integer("amount", minimum=1),
            destination=o.text("destination"),
            state=o.text("state"),
            requested_at=o.integer("requested_at"),
            requested_leaf_hash=o.hex64("requested_leaf_hash"),
            decided_at=o.opt_integer("decided_at"),
            decided_by=None if decided_by is None else o.hex64("decided_by"),
            decision_leaf_hash=None if decision is None else o.hex64("decision_leaf_hash"),
            transfer_reference=o.opt_text("transfer_reference"),
            reason=o.opt_text("reason"),
        )

    @classmethod
    def from_changed(cls, data: Any) -> Withdrawal:
        """``{"withdrawal", "account", "log"}``: the answer of a request or a decision."""
        o = JSONObject(data, "")
        if not o.has("log"):
            raise RecordFormatError("missing field", path=o.path("log"))
        return replace(
            cls.from_dict(o.raw("withdrawal"), o.path("withdrawal")),
            account=Balance.from_dict(o.raw("account")),
            log=Appended.from_dict(o.raw("log"), path=o.path("log")),
        )


@dataclass(frozen=True, slots=True)
class WithdrawalPage:
    """A page of withdrawals, newest first; ``next_offset`` is ``None`` on the last page."""

    items: tuple[Withdrawal, ...]
    next_offset: int | None

    @classmethod
    def from_dict(cls, data: Any) -> WithdrawalPage:
        o = JSONObject(data, "")
        return cls(
            items=o.items("items", Withdrawal.from_dict),
            next_offset=o.opt_integer("next_offset"),
        )
