"""The books check: every balance movement is explained by exactly one record in
the log, and every balance is what the log's records add up to.

:func:`check_books` replays the money records of the log in index order and
derives, for each record, the movements it must have caused (docs/money.md):

* ``deposit.credited``: the participant's available += amount;
* ``order.placed``: the buyer's available → held, the quote's amount;
* ``settlement.paid``: the buyer's held −= amount, each payout and the platform
  fee credited;
* ``dispute.resolved`` with ``refund``: the order's remaining escrow back to the buyer;
* ``delivery.overdue``: its ``refund`` (the whole escrow) back to the buyer;
* ``access.revoked``: the refund of :func:`exchange.orders.settle.revocation_refund`
  (from the escrow, or clawed back from the payees of a settled order);
* ``withdrawal.requested``: the participant's available → held, the amount (an
  operator's, with ``account: platform``: the platform account's);
  ``withdrawal.paid``: that held amount leaves; ``withdrawal.rejected``: it
  returns to available (each withdrawal decided once, after its request).

Every amount comes from the records, except a revocation's: its refund follows
from the subscription's paid period and the moment of revocation, which the
order row holds (``created_at``, ``access_expires_at``, ``revoked_at``, the
renewed order's ``access_expires_at``). The order's state at each record is the
replay's own (``delivered_at`` stands in for ``delivery.issued``).

It then compares that with what is stored and returns the discrepancies:
movements that differ from their record's (or name no record of the log),
account balances (available, held; providers and the platform account alike)
orders' escrow and withdrawals (participant, amount, state) that differ from
the replay's. Last, the reconciliation of the whole: money enters only by
deposits and leaves only by paid withdrawals, so

    Σ deposits − Σ paid withdrawals = Σ available + Σ held

over every account (the platform's too), with the left side from the log's
records and the right side from the stored balances (:class:`Reconciliation`).
An empty list means the books balance. Read-only; one pass over the money records.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlmodel import col

from exchange.accounts.models import Account, AccountMovement, MovementKind
from exchange.accounts.service import MOVEMENT_SIGNS
from exchange.errors import ExchangeError
from exchange.log.models import LogEntry
from exchange.orders.models import Order
from exchange.payouts.models import Withdrawal, WithdrawalState
from exchange.settlement import apportion, refund_unused
from ledger.protocol.accounts import PLATFORM_ACCOUNT

__all__ = [
    "BooksDoNotBalanceError",
    "BooksReport",
    "Discrepancy",
    "DiscrepancyKind",
    "Reconciliation",
    "assert_books_balance",
    "audit_books",
    "check_books",
]

MONEY_RECORDS = (
    "deposit.credited",
    "order.placed",
    "delivery.issued",
    "computation.completed",
    "order.disputed",
    "settlement.paid",
    "dispute.resolved",
    "access.revoked",
    "delivery.overdue",
    "withdrawal.requested",
    "withdrawal.paid",
    "withdrawal.rejected",
)
"""The record types that move money or change what a later one moves."""


class DiscrepancyKind(StrEnum):
    AVAILABLE = "available"
    """An account's available balance is not what the log's records add up to."""
    HELD = "held"
    """An account's held (escrow) balance is not what the log's records add up to."""
    ESCROW = "escrow"
    """An order's remaining escrow is not what its records leave (account = order id)."""
    MOVEMENT = "movement"
    """The movements naming a log record differ from what that record moves."""
    UNLOGGED_MOVEMENT = "unlogged_movement"
    """A movement names a leaf hash that is not in the log."""
    UNREADABLE_RECORD = "unreadable_record"
    """A money record the replay cannot apply (malformed payload, unknown order)."""
    WITHDRAWAL = "withdrawal"
    """A withdrawal's participant, amount or state is not what its records say
    (account = the withdrawal id)."""
    RECONCILIATION = "reconciliation"
    """Deposits − paid withdrawals (the log) ≠ Σ available + Σ held (the stored
    balances); account = ``all``."""


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: DiscrepancyKind
    account: str
    """The account's key id (``platform`` for fees), or the order id for ``escrow``."""
    expected: int
    """Fen, as the log's records say."""
    actual: int
    """Fen, as stored."""
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} of {self.account}: expected {self.expected}, stored {self.actual}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The whole exchange's money, in fen: what entered (``deposits``) and left
    (``paid_withdrawals``) by the log's records, and what the accounts hold."""

    deposits: int
    paid_withdrawals: int
    available: int
    """Σ available over every stored account."""
    held: int
    """Σ held over every stored account (escrow and pending withdrawals)."""

    @property
    def ok(self) -> bool:
        return self.deposits - self.paid_withdrawals == self.available + self.held

    def __str__(self) -> str:
        relation = "=" if self.ok else "≠"
        return (
            f"deposits {self.deposits} − paid withdrawals {self.paid_withdrawals} "
            f"{relation} Σ available {self.available} + Σ held {self.held}"
        )


@dataclass(frozen=True, slots=True)
class BooksReport:
    discrepancies: list[Discrepancy]
    """Every discrepancy, the reconciliation's included; empty when the books balance."""
    reconciliation: Reconciliation


class BooksDoNotBalanceError(AssertionError):
    """Raised by :func:`assert_books_balance`; lists every discrepancy."""

    def __init__(self, discrepancies: list[Discrepancy]) -> None:
        self.discrepancies = discrepancies
        lines = "\n".join(f"  {d}" for d in discrepancies)
        super().__init__(f"the books do not balance ({len(discrepancies)}):\n{lines}")


def check_books(engine: Engine) -> list[Discrepancy]:
    """Every discrepancy between the log's money records and the stored balances,
    movements, escrows and withdrawals, and the reconciliation's (see the module
    docstring); ``[]`` when they agree."""
    return audit_books(engine).discrepancies


def audit_books(engine: Engine) -> BooksReport:
    """:func:`check_books`'s discrepancies with the reconciliation's figures."""
    with engine.connect() as connection:
        orders = _order_rows(connection)
        replay = _Replay(orders)
        for index, leaf_hash, record in _money_records(connection):
            replay.apply(index, leaf_hash, record)
        movements = _movements(connection)
        logged = _logged_hashes(connection, {leaf for leaf, _, _ in movements})
        balances = _balances(connection)
        withdrawals = _withdrawal_rows(connection)
    found = list(replay.unreadable)
    found += _compare_movements(replay.movements, movements, logged)
    found += _compare_balances(replay.movements, balances)
    found += _compare_escrow(replay, orders)
    found += _compare_withdrawals(replay.withdrawals, withdrawals)
    reconciliation = Reconciliation(
        deposits=replay.deposits,
        paid_withdrawals=replay.paid_withdrawals,
        available=sum(available for available, _ in balances.values()),
        held=sum(held for _, held in balances.values()),
    )
    if not reconciliation.ok:
        found.append(
            Discrepancy(
                DiscrepancyKind.RECONCILIATION,
                "all",
                reconciliation.deposits - reconciliation.paid_withdrawals,
                reconciliation.available + reconciliation.held,
                str(reconciliation),
            )
        )
    return BooksReport(found, reconciliation)


def assert_books_balance(engine: Engine) -> None:
    """Raise :class:`BooksDoNotBalanceError` unless :func:`check_books` finds nothing."""
    discrepancies = check_books(engine)
    if discrepancies:
        raise BooksDoNotBalanceError(discrepancies)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class _OrderRow:
    created_at: int
    access_expires_at: int | None
    delivered_at: int | None
    revoked_at: int | None
    renews_order_id: str | None
    escrow: int


def _order_rows(connection: Connection) -> dict[str, _OrderRow]:
    rows = connection.execute(
        select(
            col(Order.id),
            col(Order.created_at),
            col(Order.access_expires_at),
            col(Order.delivered_at),
            col(Order.revoked_at),
            col(Order.renews_order_id),
            col(Order.escrow),
        )
    ).all()
    return {row[0]: _OrderRow(*row[1:]) for row in rows}


def _money_records(connection: Connection) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(index, leaf hash hex, signed record as JSON) of the money records, in log order."""
    result = connection.execution_options(yield_per=1_000).execute(
        select(col(LogEntry.index), col(LogEntry.leaf_hash), col(LogEntry.leaf))
        .where(col(LogEntry.record_type).in_(MONEY_RECORDS))
        .order_by(col(LogEntry.index))
    )
    for index, leaf_hash, leaf in result:
        yield int(index), bytes(leaf_hash).hex(), _signed_record(int(index), bytes(leaf))


def _signed_record(index: int, leaf: bytes) -> dict[str, Any]:
    try:
        value = json.loads(leaf)
    except (ValueError, UnicodeDecodeError):
        value = None
    return value if isinstance(value, dict) else {"unreadable": f"entry {index} is not JSON"}


_MovementKey = tuple[str, str, str]
"""(leaf hash hex, account key id, movement kind)."""


def _movements(connection: Connection) -> dict[_MovementKey, int]:
    sums: dict[_MovementKey, int] = defaultdict(int)
    rows = connection.execute(
        select(
            col(AccountMovement.leaf_hash),
            col(AccountMovement.key_id),
            col(AccountMovement.kind),
            col(AccountMovement.amount),
        )
    )
    for leaf_hash, key_id, kind, amount in rows:
        sums[(leaf_hash, key_id, kind)] += int(amount)
    return dict(sums)


def _logged_hashes(connection: Connection, hashes: Iterable[str]) -> set[str]:
    wanted = sorted(hashes)
    found: set[str] = set()
    for begin in range(0, len(wanted), 500):
        chunk = [bytes.fromhex(h) for h in wanted[begin : begin + 500] if _is_hex(h)]
        rows = connection.execute(
            select(col(LogEntry.leaf_hash)).where(col(LogEntry.leaf_hash).in_(chunk))
        )
        found.update(bytes(row[0]).hex() for row in rows)
    return found


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _WithdrawalRow:
    key_id: str
    amount: int
    state: str


def _withdrawal_rows(connection: Connection) -> dict[str, _WithdrawalRow]:
    rows = connection.execute(
        select(
            col(Withdrawal.id),
            col(Withdrawal.key_id),
            col(Withdrawal.amount),
            col(Withdrawal.state),
        )
    ).all()
    return {row[0]: _WithdrawalRow(row[1], int(row[2]), row[3]) for row in rows}


def _balances(connection: Connection) -> dict[str, tuple[int, int]]:
    rows = connection.execute(
        select(col(Account.key_id), col(Account.available), col(Account.held))
    ).all()
    return {key_id: (int(available), int(held)) for key_id, available, held in rows}


# --------------------------------------------------------------------------- the replay


class _Unreadable(Exception):
    pass


@dataclass
class _OrderState:
    buyer: str
    amount: int
    escrow: int
    state: str = "placed"
    paid: dict[str, int] = field(default_factory=dict)
    """What its settlement paid to whom (payouts and the platform fee)."""


class _Replay:
    def __init__(self, orders: Mapping[str, _OrderRow]) -> None:
        self.rows = orders
        self.orders: dict[str, _OrderState] = {}
        self.withdrawals: dict[str, _WithdrawalRow] = {}
        self.deposits = 0
        self.paid_withdrawals = 0
        self.movements: dict[_MovementKey, int] = defaultdict(int)
        self.unreadable: list[Discrepancy] = []
        self._leaf = ""
        """The leaf hash (hex) of the record being applied."""

    def apply(self, index: int, leaf_hash: str, signed: dict[str, Any]) -> None:
        self._leaf = leaf_hash
        try:
            record = signed["record"]
            handler = getattr(self, "_" + str(record["type"]).replace(".", "_"))
            handler(str(record["actor"]), record["payload"])
        except (_Unreadable, ExchangeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            actor = signed.get("record", {}).get("actor", "") if isinstance(signed, dict) else ""
            self.unreadable.append(
                Discrepancy(
                    DiscrepancyKind.UNREADABLE_RECORD,
                    str(actor),
                    0,
                    0,
                    f"log entry {index}: {exc!r}",
                )
            )

    def _move(self, key_id: str, kind: MovementKind, amount: int) -> None:
        if amount > 0:
            self.movements[(self._leaf, key_id, kind.value)] += amount

    def _order(self, payload: Mapping[str, Any]) -> _OrderState:
        order_id = payload["order_id"]
        if order_id not in self.orders:
            raise _Unreadable(f"order {order_id} was not placed before")
        return self.orders[order_id]

    def _deposit_credited(self, _actor: str, payload: Mapping[str, Any]) -> None:
        amount = _fen(payload["amount"])
        self._move(str(payload["participant"]), MovementKind.DEPOSIT, amount)
        self.deposits += amount

    def _withdrawal_requested(self, actor: str, payload: Mapping[str, Any]) -> None:
        withdrawal_id, amount = str(payload["withdrawal_id"]), _fen(payload["amount"])
        if withdrawal_id in self.withdrawals:
            raise _Unreadable(f"withdrawal {withdrawal_id} was requested before")
        # an operator's withdrawal is of the platform's fees (exchange.payouts)
        account = PLATFORM_ACCOUNT if payload.get("account") == PLATFORM_ACCOUNT else actor
        self.withdrawals[withdrawal_id] = _WithdrawalRow(
            account, amount, WithdrawalState.PENDING.value
        )
        self._move(account, MovementKind.WITHDRAW_HOLD, amount)

    def _decide_withdrawal(
        self, payload: Mapping[str, Any], state: WithdrawalState, kind: MovementKind
    ) -> int:
        withdrawal_id = str(payload["withdrawal_id"])
        pending = self.withdrawals.get(withdrawal_id)
        if pending is None or pending.state != WithdrawalState.PENDING:
            what = "was not requested before" if pending is None else f"is {pending.state}"
            raise _Unreadable(f"withdrawal {withdrawal_id} {what}; it cannot be {state}")
        self.withdrawals[withdrawal_id] = replace(pending, state=state.value)
        self._move(pending.key_id, kind, pending.amount)
        return pending.amount

    def _withdrawal_paid(self, _actor: str, payload: Mapping[str, Any]) -> None:
        self.paid_withdrawals += self._decide_withdrawal(
            payload, WithdrawalState.PAID, MovementKind.WITHDRAW_PAID
        )

    def _withdrawal_rejected(self, _actor: str, payload: Mapping[str, Any]) -> None:
        self._decide_withdrawal(payload, WithdrawalState.REJECTED, MovementKind.WITHDRAW_RELEASE)

    def _order_placed(self, actor: str, payload: Mapping[str, Any]) -> None:
        amount = _fen(payload["quote"]["amount"])
        self.orders[str(payload["order_id"])] = _OrderState(actor, amount, amount)
        self._move(actor, MovementKind.ESCROW_HOLD, amount)

    def _delivery_issued(self, _actor: str, payload: Mapping[str, Any]) -> None:
        order = self._order(payload)
        if order.state == "placed":
            order.state = "delivered"

    def _computation_completed(self, actor: str, payload: Mapping[str, Any]) -> None:
        self._delivery_issued(actor, payload)  # the first answer delivers the order

    def _order_disputed(self, _actor: str, payload: Mapping[str, Any]) -> None:
        self._order(payload).state = "disputed"

    def _settlement_paid(self, _actor: str, payload: Mapping[str, Any]) -> None:
        order = self._order(payload)
        amount, fee = _fen(payload["amount"]), _fen(payload["platform_fee"])
        payouts = {str(k): _fen(v) for k, v in payload["payouts"].items()}
        self._move(order.buyer, MovementKind.ESCROW_RELEASE, amount)
        for key_id, part in payouts.items():
            self._move(key_id, MovementKind.PAYOUT, part)
        self._move(PLATFORM_ACCOUNT, MovementKind.FEE, fee)
        order.escrow -= amount
        order.state = "settled"
        order.paid = {k: v for k, v in {**payouts, PLATFORM_ACCOUNT: fee}.items() if v > 0}

    def _dispute_resolved(self, _actor: str, payload: Mapping[str, Any]) -> None:
        order = self._order(payload)
        if payload["outcome"] == "refund":
            self._move(order.buyer, MovementKind.REFUND, order.escrow)
            order.escrow = 0
            order.state = "refunded"

    def _delivery_overdue(self, _actor: str, payload: Mapping[str, Any]) -> None:
        order = self._order(payload)
        refund = _fen(payload["refund"])
        if order.state != "placed" or refund != order.escrow:
            raise _Unreadable(
                f"order {payload['order_id']} is {order.state} with {order.escrow} fen in "
                f"escrow; an overdue refund of {refund} fen does not apply"
            )
        self._move(order.buyer, MovementKind.REFUND, refund)
        order.escrow = 0
        order.state = "refunded"

    def _access_revoked(self, _actor: str, payload: Mapping[str, Any]) -> None:
        order = self._order(payload)
        row = self.rows.get(str(payload["order_id"]))
        if row is None or row.revoked_at is None:
            raise _Unreadable(f"order {payload['order_id']} has no revocation time")
        delivered = order.state != "placed" or (
            row.delivered_at is not None and row.delivered_at <= row.revoked_at
        )
        from_escrow, clawbacks = 0, {}
        if not delivered:
            from_escrow = order.escrow
        elif row.access_expires_at is None:  # one-off
            from_escrow = 0 if order.state == "settled" else order.escrow
        else:
            owed = refund_unused(
                order.amount, self._period_start(row), row.access_expires_at, row.revoked_at
            )
            if order.state != "settled":
                from_escrow = min(owed, order.escrow)
            elif owed > 0:
                clawbacks = {k: v for k, v in apportion(owed, order.paid).items() if v > 0}
        self._move(order.buyer, MovementKind.REFUND, from_escrow)
        for key_id, amount in clawbacks.items():
            self._move(key_id, MovementKind.CLAWBACK, amount)
        self._move(order.buyer, MovementKind.SETTLED_REFUND, sum(clawbacks.values()))
        order.escrow -= from_escrow
        if order.escrow == 0 and order.state != "settled":
            order.state = "refunded"

    def _period_start(self, row: _OrderRow) -> int:
        """``exchange.orders.settle.paid_period``: a renewal starts where the renewed
        order's paid period ended, if that was later than its placement."""
        start = row.created_at
        previous = self.rows.get(row.renews_order_id) if row.renews_order_id else None
        if previous is not None and previous.access_expires_at is not None:
            start = max(start, previous.access_expires_at)
        return start


def _fen(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Unreadable(f"{value!r} is not an amount of fen")
    return value


# --------------------------------------------------------------------------- comparing


def _compare_movements(
    expected: Mapping[_MovementKey, int], stored: Mapping[_MovementKey, int], logged: set[str]
) -> list[Discrepancy]:
    found = []
    for key in sorted(set(expected) | set(stored)):
        want, have = expected.get(key, 0), stored.get(key, 0)
        if want == have:
            continue
        leaf, account, kind = key
        if leaf not in logged and want == 0:
            what = DiscrepancyKind.UNLOGGED_MOVEMENT
            detail = f"{kind} naming leaf {leaf}, which is not in the log"
        else:
            what = DiscrepancyKind.MOVEMENT
            detail = f"{kind} of the record with leaf hash {leaf}"
        found.append(Discrepancy(what, account, want, have, detail))
    return found


def _compare_balances(
    expected: Mapping[_MovementKey, int], stored: Mapping[str, tuple[int, int]]
) -> list[Discrepancy]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_leaf, account, kind), amount in expected.items():
        available_sign, held_sign = MOVEMENT_SIGNS[MovementKind(kind)]
        sums[account][0] += available_sign * amount
        sums[account][1] += held_sign * amount
    found = []
    for account in sorted(set(sums) | set(stored)):
        want = sums.get(account, [0, 0])
        have = stored.get(account, (0, 0))
        if want[0] != have[0]:
            found.append(Discrepancy(DiscrepancyKind.AVAILABLE, account, want[0], have[0]))
        if want[1] != have[1]:
            found.append(Discrepancy(DiscrepancyKind.HELD, account, want[1], have[1]))
    return found


def _compare_escrow(replay: _Replay, rows: Mapping[str, _OrderRow]) -> list[Discrepancy]:
    found = []
    for order_id in sorted(set(replay.orders) | set(rows)):
        order = replay.orders.get(order_id)
        want = 0 if order is None else order.escrow
        row = rows.get(order_id)
        have = 0 if row is None else row.escrow
        if want != have:
            found.append(Discrepancy(DiscrepancyKind.ESCROW, order_id, want, have))
    return found


def _compare_withdrawals(
    expected: Mapping[str, _WithdrawalRow], stored: Mapping[str, _WithdrawalRow]
) -> list[Discrepancy]:
    found = []
    for withdrawal_id in sorted(set(expected) | set(stored)):
        want, have = expected.get(withdrawal_id), stored.get(withdrawal_id)
        if want == have:
            continue
        found.append(
            Discrepancy(
                DiscrepancyKind.WITHDRAWAL,
                withdrawal_id,
                0 if want is None else want.amount,
                0 if have is None else have.amount,
                f"the log says {_withdrawal_text(want)}, stored {_withdrawal_text(have)}",
            )
        )
    return found


def _withdrawal_text(row: _WithdrawalRow | None) -> str:
    return "nothing" if row is None else f"{row.state} for {row.key_id}"
