"""Call builders of ``/withdrawals`` (payouts), shared by both clients (no I/O).

A participant withdraws (``withdrawal.requested``: a new UUID, the amount in fen,
where the money goes; an operator withdraws the exchange's fees, with ``"account":
"platform"``); an operator records the withdrawal paid (``withdrawal.paid`` with
the outside transfer's reference) or rejected (``withdrawal.rejected``). All three
move money, so they carry an ``Idempotency-Key`` (generated unless given) and are
retried safely; each answer's receipt is checked against the record signed.
"""

from __future__ import annotations

import uuid

from clients.sdk._base import Call, _parsed
from clients.sdk._events import EventCalls
from clients.sdk.payout_models import WITHDRAWAL_STATES, Withdrawal, WithdrawalPage
from ledger.protocol.accounts import PLATFORM_ACCOUNT

__all__ = ["PayoutCalls"]


def _withdrawal_id(withdrawal_id: str) -> str:
    if not isinstance(withdrawal_id, str) or not withdrawal_id:
        raise ValueError("a withdrawal id is a non-empty string")
    return withdrawal_id


def _fen(amount_fen: int) -> int:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen < 1:
        raise ValueError("an amount is a whole number of fen, at least 1")
    return amount_fen


class PayoutCalls(EventCalls):
    """Call builders of ``/withdrawals`` (no I/O)."""

    def _withdraw_call(
        self,
        amount_fen: int,
        destination: str,
        withdrawal_id: str | None,
        idempotency_key: str | None,
        *,
        platform: bool = False,
    ) -> Call[Withdrawal]:
        payload = {
            "withdrawal_id": withdrawal_id or str(uuid.uuid4()),
            "amount": _fen(amount_fen),
            "destination": destination,
        }
        if platform:
            payload["account"] = PLATFORM_ACCOUNT
        return self._action(
            "POST",
            "/withdrawals",
            "withdrawal.requested",
            payload,
            Withdrawal.from_changed,
            ok=(201,),
            idempotency_key=idempotency_key,
            keyed=True,
        )

    def _withdrawals_call(self, state: str | None, limit: int, offset: int) -> Call[WithdrawalPage]:
        params: dict[str, int | str] = {"limit": int(limit), "offset": int(offset)}
        if state is not None:
            if state not in WITHDRAWAL_STATES:
                raise ValueError(f"state is one of {', '.join(sorted(WITHDRAWAL_STATES))}")
            params["state"] = state
        return Call(
            "GET", "/withdrawals", _parsed(WithdrawalPage.from_dict), params=params, signed=True
        )

    def _withdrawal_call(self, withdrawal_id: str) -> Call[Withdrawal]:
        path = f"/withdrawals/{_withdrawal_id(withdrawal_id)}"
        return Call("GET", path, _parsed(Withdrawal.from_dict), signed=True)

    def _decide_withdrawal_call(
        self, withdrawal_id: str, outcome: str, text: str, idempotency_key: str | None
    ) -> Call[Withdrawal]:
        withdrawal_id = _withdrawal_id(withdrawal_id)
        record_type, field = {
            "paid": ("withdrawal.paid", "reference"),
            "rejected": ("withdrawal.rejected", "reason"),
        }[outcome]
        return self._action(
            "POST",
            f"/withdrawals/{withdrawal_id}/{outcome}",
            record_type,
            {"withdrawal_id": withdrawal_id, field: text},
            Withdrawal.from_changed,
            idempotency_key=idempotency_key,
            keyed=True,
        )
