"""Balances and deposits.

Every balance change is a SQL ``UPDATE`` run *inside* the log's append
transaction (:func:`at_flush`): :func:`exchange.records.commit_with_record`
hands the staged change to the write path, which runs these statements in the
change's savepoint of the batch transaction, before its rows are written and
before the one commit. A debit is conditional (``WHERE available >= amount``, rowcount
checked), never read-then-write, so two orders of one buyer cannot both spend
the same fen; a refusal raised there rolls back the record and every row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Final

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from exchange.accounts.models import Account, AccountMovement, MovementKind
from exchange.accounts.schemas import (
    AccountPublic,
    AccountView,
    DepositCredited,
    DepositPayload,
    MovementPublic,
)
from exchange.errors import ExchangeError
from exchange.idempotency import IdempotencyKey, Idempotent
from exchange.log.batch import run_at_commit
from exchange.log.models import LogEntry
from exchange.log.queries import promise_of
from exchange.log.schemas import Appended, PromiseBody
from exchange.participants.models import Participant
from exchange.participants.service import ParticipantNotFoundError
from exchange.records import SignedAction, commit_with_record, log_receipt, payload_of
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "MOVEMENT_SIGNS",
    "InsufficientFundsError",
    "account_after",
    "account_public",
    "account_view",
    "at_flush",
    "credit",
    "debit",
    "deposit",
    "derived_balance",
    "hold",
    "movement",
    "open_account",
    "rebuild_deposit",
    "receipt_for",
    "refund_held",
    "release_held",
]


class InsufficientFundsError(ExchangeError):
    status = 402
    code = "insufficient_funds"


class EscrowMismatchError(ExchangeError):
    """The balance row holds less escrow than the order says (never happens when every
    change goes through this module; refused rather than driven negative)."""

    status = 409
    code = "escrow_mismatch"


class TargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def at_flush(session: Session, fn: Callable[[Connection], None]) -> AbstractContextManager[None]:
    """Run ``fn(connection)`` inside the transaction that commits the change staged
    on ``session`` in this block, before its rows are written
    (:func:`exchange.log.batch.run_at_commit`). Raising there refuses the change."""
    return run_at_commit(session, fn)


def open_account(connection: Connection, key_id: str) -> None:
    """Create ``key_id``'s zero account unless it exists, on ``connection``: run it
    inside the effect's transaction (:func:`at_flush`) before the balance UPDATEs, so
    that a refused effect leaves no empty account behind. (``INSERT … ON CONFLICT DO
    NOTHING``: an account made meanwhile by another transaction is kept as it is.)"""
    connection.execute(
        _OPEN_ACCOUNT[connection.dialect.name],
        {"key_id": key_id, "available": 0, "held": 0, "created_at": now_ms()},
    )


# Built once: every order runs these in the committer (building a statement costs
# several times what executing a built one does).
_OPEN_ACCOUNT: Final = {
    "postgresql": pg_insert(Account).on_conflict_do_nothing(index_elements=["key_id"]),
    "sqlite": sqlite_insert(Account).on_conflict_do_nothing(index_elements=["key_id"]),
}
_HOLD: Final = (
    update(Account)
    .where(
        col(Account.key_id) == bindparam("account"), col(Account.available) >= bindparam("amount")
    )
    .values(
        available=col(Account.available) - bindparam("amount"),
        held=col(Account.held) + bindparam("amount"),
    )
)


def hold(connection: Connection, key_id: str, amount: int) -> None:
    """Move ``amount`` from available to held, only if available covers it."""
    result = connection.execute(_HOLD, {"account": key_id, "amount": amount})
    if result.rowcount != 1:
        raise InsufficientFundsError(f"the account's available balance is below {amount} fen")


def credit(connection: Connection, key_id: str, amount: int) -> None:
    connection.execute(
        update(Account)
        .where(col(Account.key_id) == key_id)
        .values(available=col(Account.available) + amount)
    )


def release_held(connection: Connection, key_id: str, amount: int) -> None:
    """Take ``amount`` out of held (settlement of escrow); the escrow must cover it."""
    result = connection.execute(
        update(Account)
        .where(col(Account.key_id) == key_id, col(Account.held) >= amount)
        .values(held=col(Account.held) - amount)
    )
    if result.rowcount != 1:
        raise EscrowMismatchError(f"the account {key_id} holds less than {amount} fen")


def refund_held(connection: Connection, key_id: str, amount: int) -> None:
    """Move ``amount`` from held back to available (a refund of escrow)."""
    result = connection.execute(
        update(Account)
        .where(col(Account.key_id) == key_id, col(Account.held) >= amount)
        .values(held=col(Account.held) - amount, available=col(Account.available) + amount)
    )
    if result.rowcount != 1:
        raise EscrowMismatchError(f"the account {key_id} holds less than {amount} fen")


def debit(
    connection: Connection,
    key_id: str,
    amount: int,
    error: Callable[[str], ExchangeError] = InsufficientFundsError,
) -> None:
    """Take ``amount`` from available, only if available covers it; else raise ``error``."""
    result = connection.execute(
        update(Account)
        .where(col(Account.key_id) == key_id, col(Account.available) >= amount)
        .values(available=col(Account.available) - amount)
    )
    if result.rowcount != 1:
        raise error(f"the available balance of {key_id} is below {amount} fen")


MOVEMENT_SIGNS: Final[Mapping[MovementKind, tuple[int, int]]] = {
    MovementKind.DEPOSIT: (1, 0),
    MovementKind.ESCROW_HOLD: (-1, 1),
    MovementKind.ESCROW_RELEASE: (0, -1),
    MovementKind.REFUND: (1, -1),
    MovementKind.PAYOUT: (1, 0),
    MovementKind.FEE: (1, 0),
    MovementKind.CLAWBACK: (-1, 0),
    MovementKind.SETTLED_REFUND: (1, 0),
    MovementKind.WITHDRAW_HOLD: (-1, 1),
    MovementKind.WITHDRAW_PAID: (0, -1),
    MovementKind.WITHDRAW_RELEASE: (1, -1),
}
"""How a movement of each kind changes (available, held): ``sign × amount``."""


def movement(
    key_id: str,
    kind: MovementKind,
    amount: int,
    *,
    leaf_hash: bytes,
    order_id: str | None = None,
    reference: str | None = None,
) -> AccountMovement:
    """The ledger row of one balance change (deltas follow from ``kind``)."""
    available_sign, held_sign = MOVEMENT_SIGNS[kind]
    return AccountMovement(
        key_id=key_id,
        kind=kind.value,
        amount=amount,
        available_delta=available_sign * amount,
        held_delta=held_sign * amount,
        order_id=order_id,
        reference=reference,
        leaf_hash=leaf_hash.hex(),
        created_at=now_ms(),
    )


def account_public(session: Session, key_id: str) -> AccountPublic:
    row = session.connection().execute(_BALANCE, {"key_id": key_id}).first()
    if row is None:
        return AccountPublic(key_id=key_id, available=0, held=0)
    return AccountPublic(key_id=key_id, available=row.available, held=row.held)


_BALANCE: Final = select(col(Account.available), col(Account.held)).where(
    col(Account.key_id) == bindparam("key_id")
)


def movement_public(row: AccountMovement) -> MovementPublic:
    assert row.id is not None
    return MovementPublic(**row.model_dump())


def account_view(session: Session, key_id: str, *, limit: int) -> AccountView:
    rows = (
        session.execute(
            select(AccountMovement)
            .where(col(AccountMovement.key_id) == key_id)
            .order_by(col(AccountMovement.id).desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )
    return AccountView(
        account=account_public(session, key_id), movements=[movement_public(r) for r in rows]
    )


def account_after(session: Session, key_id: str, leaf_hash_hex: str) -> AccountPublic:
    """``key_id``'s balances right after the record ``leaf_hash_hex`` was applied
    (what that request answered), whatever moved since: the sum of the account's
    movements up to the last one of a record at or before it in the log.

    Movement ids grow in log order: every movement is inserted in its record's
    append transaction, and those take turns (the log's write lock)."""
    index = _log_index(session, [leaf_hash_hex]).get(leaf_hash_hex)
    if index is None:
        raise RuntimeError(f"no log entry with leaf hash {leaf_hash_hex}")
    last_id = None
    before: int | None = None
    while last_id is None:
        query = select(col(AccountMovement.id), col(AccountMovement.leaf_hash)).where(
            col(AccountMovement.key_id) == key_id
        )
        if before is not None:
            query = query.where(col(AccountMovement.id) < before)
        page = session.execute(query.order_by(col(AccountMovement.id).desc()).limit(100)).all()
        if not page:
            return AccountPublic(key_id=key_id, available=0, held=0)
        indexes = _log_index(session, [leaf for _, leaf in page])
        last_id = next((i for i, leaf in page if indexes.get(leaf, index + 1) <= index), None)
        before = page[-1][0]
    available, held = session.execute(
        select(
            func.coalesce(func.sum(AccountMovement.available_delta), 0),
            func.coalesce(func.sum(AccountMovement.held_delta), 0),
        ).where(col(AccountMovement.key_id) == key_id, col(AccountMovement.id) <= last_id)
    ).one()
    return AccountPublic(key_id=key_id, available=int(available), held=int(held))


def _log_index(session: Session, leaf_hashes_hex: list[str]) -> dict[str, int]:
    """``{leaf hash hex: log index}`` of those of the records that are in the log."""
    wanted = [bytes.fromhex(h) for h in dict.fromkeys(leaf_hashes_hex)]
    rows = session.execute(
        select(col(LogEntry.leaf_hash), col(LogEntry.index)).where(
            col(LogEntry.leaf_hash).in_(wanted)
        )
    ).all()
    return {bytes(leaf).hex(): int(index) for leaf, index in rows}


def derived_balance(session: Session, key_id: str) -> tuple[int, int]:
    """(available, held) summed from the movement ledger (an audit of the balance row)."""
    available, held = session.execute(
        select(
            func.coalesce(func.sum(AccountMovement.available_delta), 0),
            func.coalesce(func.sum(AccountMovement.held_delta), 0),
        ).where(col(AccountMovement.key_id) == key_id)
    ).one()
    return int(available), int(held)


def deposit(
    session: Session,
    action: SignedAction,
    key_id: str,
    log_key: SM2PrivateKey,
    idempotent: Idempotent,
) -> DepositCredited:
    """Apply a checked ``deposit.credited`` action (an operator's) for ``key_id``."""
    payload = payload_of(action, DepositPayload)
    if payload.participant != key_id:
        raise TargetMismatchError(
            f"the record credits {payload.participant}, the request names {key_id}"
        )
    if session.get(Participant, key_id) is None:
        raise ParticipantNotFoundError(f"no participant {key_id}")
    leaf_hash = action.submission.leaf_hash
    row = movement(
        key_id,
        MovementKind.DEPOSIT,
        payload.amount,
        leaf_hash=action.submission.leaf_hash,
        reference=payload.reference,
    )

    def stage() -> AccountMovement:
        session.add(row)
        idempotent.stage(session, resource_id=key_id, leaf_hash=leaf_hash, status_code=201)
        return row

    def in_transaction(connection: Connection) -> None:
        open_account(connection, key_id)
        credit(connection, key_id, payload.amount)

    with at_flush(session, in_transaction):
        _, accepted = commit_with_record(session, action, log_key, stage)
    session.refresh(row)
    return DepositCredited(
        account=account_public(session, key_id),
        movement=movement_public(row),
        log=log_receipt(accepted),
    )


def receipt_for(session: Session, leaf_hash_hex: str) -> Appended:
    entry = (
        session.execute(
            select(LogEntry).where(col(LogEntry.leaf_hash) == bytes.fromhex(leaf_hash_hex))
        )
        .scalars()
        .one()
    )
    promise = promise_of(session, entry).to_dict()
    return Appended(
        index=entry.index, leaf_hash=promise["leaf_hash"], promise=PromiseBody(**promise)
    )


def rebuild_deposit(session: Session, row: IdempotencyKey) -> DepositCredited:
    """The response of a deposit made under an idempotency key whose response was
    not stored (a crash right after the commit): the balance as it was then."""
    moved = (
        session.execute(
            select(AccountMovement).where(col(AccountMovement.leaf_hash) == row.leaf_hash)
        )
        .scalars()
        .one()
    )
    return DepositCredited(
        account=account_after(session, moved.key_id, row.leaf_hash),
        movement=movement_public(moved),
        log=receipt_for(session, row.leaf_hash),
    )
