"""Withdrawals: request (the participant's funds held), then paid or rejected (an operator).

Each change is one signed record stored with the withdrawal row, the balance
change and its movement in ONE transaction (:func:`exchange.records.commit_with_record`):

* ``withdrawal.requested``: available → held (conditional ``UPDATE … WHERE
  available >= amount`` at flush: 402 ``insufficient_funds`` and nothing stored
  when the available balance does not cover it, however many requests race);
  a ``withdraw_hold`` movement;
* ``withdrawal.paid``: held −= amount (the money left the exchange); ``withdraw_paid``;
* ``withdrawal.rejected``: held → available; ``withdraw_release``.

An operator holds no account of its own: what an operator withdraws is the
exchange's fees (``"account": "platform"`` in the request; anyone else is refused
it, 403 ``platform_account``), and such a withdrawal is paid by another operator
than the one who asked for it (403 ``same_operator``: four eyes on the
exchange's own money; rejecting it is anyone's).

A withdrawal is decided once: a decided one is refused (409 ``withdrawal_decided``),
checked again inside the decision's transaction (so of two decisions racing, the
one that commits second is refused the same way, with nothing stored; the row's
``row_version`` backs this up: 409 ``concurrent_update``).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from exchange.accounts.models import MovementKind
from exchange.accounts.service import (
    account_after,
    account_public,
    at_flush,
    hold,
    movement,
    now_ms,
    receipt_for,
    refund_held,
    release_held,
)
from exchange.errors import ConflictError, ForbiddenError, NotFoundError
from exchange.idempotency import IdempotencyKey, Idempotent
from exchange.log.models import LogEntry
from exchange.participants.models import Principal
from exchange.payouts.models import Withdrawal, WithdrawalState
from exchange.payouts.schemas import (
    WithdrawalChanged,
    WithdrawalPage,
    WithdrawalPaid,
    WithdrawalPublic,
    WithdrawalRejected,
    WithdrawalRequested,
)
from exchange.records import SignedAction, commit_with_record, log_receipt, payload_of
from ledger.protocol.accounts import PLATFORM_ACCOUNT
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "PlatformAccountError",
    "SameOperatorError",
    "WithdrawalDecidedError",
    "WithdrawalExistsError",
    "WithdrawalNotFoundError",
    "get_withdrawal",
    "list_withdrawals",
    "pay",
    "rebuild_changed",
    "reject",
    "request",
    "withdrawal_public",
]


class WithdrawalNotFoundError(NotFoundError):
    code = "withdrawal_not_found"


class WithdrawalExistsError(ConflictError):
    code = "withdrawal_exists"


class WithdrawalDecidedError(ConflictError):
    code = "withdrawal_decided"


class PlatformAccountError(ForbiddenError):
    code = "platform_account"


class SameOperatorError(ForbiddenError):
    code = "same_operator"


def withdrawal_public(row: Withdrawal) -> WithdrawalPublic:
    return WithdrawalPublic(
        id=row.id,
        participant=row.key_id,
        amount=row.amount,
        destination=row.destination,
        state=row.state,
        requested_at=row.requested_at,
        requested_leaf_hash=row.requested_leaf_hash,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_leaf_hash=row.decision_leaf_hash,
        transfer_reference=row.transfer_reference,
        reason=row.reason,
    )


def request(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    idempotent: Idempotent,
    principal: Principal,
) -> WithdrawalChanged:
    """Apply a checked ``withdrawal.requested`` signed by ``principal``: from its own
    account, or, an operator's, from the platform's."""
    payload = payload_of(action, WithdrawalRequested)
    if principal.is_operator != (payload.account == PLATFORM_ACCOUNT):
        raise PlatformAccountError(
            "operators withdraw the platform's fees (account: platform) and hold no "
            "account of their own; only operators withdraw from the platform account"
        )
    key_id = PLATFORM_ACCOUNT if principal.is_operator else action.signed.record.actor
    if session.get(Withdrawal, payload.withdrawal_id) is not None:
        raise WithdrawalExistsError(f"withdrawal {payload.withdrawal_id} already exists")
    leaf_hash = action.submission.leaf_hash
    now = now_ms()
    row = Withdrawal(
        id=payload.withdrawal_id,
        key_id=key_id,
        amount=payload.amount,
        destination=payload.destination,
        state=WithdrawalState.PENDING.value,
        requested_at=now,
        requested_leaf_hash=leaf_hash.hex(),
    )

    def stage() -> None:
        session.add(row)
        session.add(
            movement(
                key_id,
                MovementKind.WITHDRAW_HOLD,
                row.amount,
                leaf_hash=leaf_hash,
                reference=row.id,
            )
        )
        idempotent.stage(session, resource_id=row.id, leaf_hash=leaf_hash, status_code=201)

    with at_flush(session, lambda connection: hold(connection, key_id, row.amount)):
        _, accepted = commit_with_record(session, action, log_key, stage)
    return WithdrawalChanged(
        withdrawal=withdrawal_public(row),
        account=account_public(session, key_id),
        log=log_receipt(accepted),
    )


def pay(
    session: Session, action: SignedAction, log_key: SM2PrivateKey, idempotent: Idempotent
) -> WithdrawalChanged:
    """Apply a checked ``withdrawal.paid`` (an operator's): the held amount leaves."""
    payload = payload_of(action, WithdrawalPaid)
    row = session.get(Withdrawal, payload.withdrawal_id)
    if (
        row is not None
        and row.key_id == PLATFORM_ACCOUNT
        and row.state == WithdrawalState.PENDING
        and _requester(session, row) == action.signed.record.actor
    ):
        raise SameOperatorError(
            "the exchange's fees are paid out by another operator than the one who "
            "asked for the withdrawal"
        )

    def decide(row: Withdrawal) -> None:
        row.state = WithdrawalState.PAID.value
        row.transfer_reference = payload.reference

    return _decide(
        session,
        action,
        log_key,
        idempotent,
        payload.withdrawal_id,
        decide,
        MovementKind.WITHDRAW_PAID,
        release_held,
    )


def reject(
    session: Session, action: SignedAction, log_key: SM2PrivateKey, idempotent: Idempotent
) -> WithdrawalChanged:
    """Apply a checked ``withdrawal.rejected`` (an operator's): the amount is available again."""
    payload = payload_of(action, WithdrawalRejected)

    def decide(row: Withdrawal) -> None:
        row.state = WithdrawalState.REJECTED.value
        row.reason = payload.reason

    return _decide(
        session,
        action,
        log_key,
        idempotent,
        payload.withdrawal_id,
        decide,
        MovementKind.WITHDRAW_RELEASE,
        refund_held,
    )


def _requester(session: Session, row: Withdrawal) -> str:
    """The signer of the withdrawal's ``withdrawal.requested`` record, as logged."""
    actor = session.execute(
        select(col(LogEntry.actor_key_id)).where(
            col(LogEntry.leaf_hash) == bytes.fromhex(row.requested_leaf_hash)
        )
    ).scalar_one()
    return str(actor)


def _decide(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    idempotent: Idempotent,
    withdrawal_id: str,
    decide: Callable[[Withdrawal], None],
    kind: MovementKind,
    apply: Callable[[Connection, str, int], None],
) -> WithdrawalChanged:
    row = session.get(Withdrawal, withdrawal_id)
    if row is None:
        raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
    if row.state != WithdrawalState.PENDING:
        raise WithdrawalDecidedError(f"withdrawal {row.id} was already {row.state}")
    leaf_hash = action.submission.leaf_hash
    key_id, amount = row.key_id, row.amount

    def stage() -> None:
        decide(row)
        row.decided_at = now_ms()
        row.decided_by = action.signed.record.actor
        row.decision_leaf_hash = leaf_hash.hex()
        session.add(movement(key_id, kind, amount, leaf_hash=leaf_hash, reference=row.id))
        idempotent.stage(session, resource_id=row.id, leaf_hash=leaf_hash, status_code=200)

    def in_transaction(connection: Connection) -> None:
        # Under the log's write lock: a decision committed since the check above
        # refuses this one before any balance moves.
        state = connection.execute(
            select(col(Withdrawal.state)).where(col(Withdrawal.id) == withdrawal_id)
        ).scalar_one()
        if state != WithdrawalState.PENDING:
            raise WithdrawalDecidedError(f"withdrawal {withdrawal_id} was already {state}")
        apply(connection, key_id, amount)

    with at_flush(session, in_transaction):
        _, accepted = commit_with_record(session, action, log_key, stage)
    return WithdrawalChanged(
        withdrawal=withdrawal_public(row),
        account=account_public(session, key_id),
        log=log_receipt(accepted),
    )


def get_withdrawal(session: Session, principal: Principal, withdrawal_id: str) -> WithdrawalPublic:
    """The participant who withdraws and operators see a withdrawal; others get 404."""
    row = session.get(Withdrawal, withdrawal_id)
    if row is None or not (principal.is_operator or row.key_id == principal.key_id):
        raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
    return withdrawal_public(row)


def list_withdrawals(
    session: Session,
    principal: Principal,
    *,
    state: WithdrawalState | None,
    limit: int,
    offset: int,
) -> WithdrawalPage:
    """Operators: every withdrawal; anyone else: their own. Newest first."""
    query = select(Withdrawal)
    if not principal.is_operator:
        query = query.where(col(Withdrawal.key_id) == principal.key_id)
    if state is not None:
        query = query.where(col(Withdrawal.state) == state.value)
    query = query.order_by(col(Withdrawal.requested_at).desc(), col(Withdrawal.id)).offset(offset)
    rows = session.execute(query.limit(limit + 1)).scalars().all()
    return WithdrawalPage(
        items=[withdrawal_public(r) for r in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )


def rebuild_changed(session: Session, key: IdempotencyKey) -> WithdrawalChanged:
    """The response of a request or decision made under an idempotency key whose
    response was not stored (a crash right after the commit): the withdrawal as it
    is now, the balances right after that record, and its receipt."""
    row = session.get(Withdrawal, key.resource_id, populate_existing=True)
    if row is None:
        raise RuntimeError(f"idempotency key {key.key!r} names no withdrawal change")
    return WithdrawalChanged(
        withdrawal=withdrawal_public(row),
        account=account_after(session, row.key_id, key.leaf_hash),
        log=receipt_for(session, key.leaf_hash),
    )
