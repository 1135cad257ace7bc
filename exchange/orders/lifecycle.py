"""After delivery: acceptance and settlement, disputes, auto-accept, revocation.

::

    delivered ─► (order.accepted | order.auto_accepted) + settlement.paid ─► settled
        │
        └──► order.disputed ─► disputed ─► dispute.resolved ─► settled | refunded

    access.revoked (a provider, any time before refunded): sets revoked_at and
    refunds what the rules of docs/money.md say (exchange.orders.settle).

Who signs: the buyer accepts and disputes, an operator resolves, a provider of
the order's listing revokes; the exchange (its log key) signs only what it
decides itself: ``order.auto_accepted`` past the acceptance deadline and every
``settlement.paid`` (the computed split), stored in the SAME transaction as the
record that caused it (:func:`exchange.records.commit_with_records`), with the
order's change and every balance change.

Concurrency: every check is made on a snapshot of the order read before the
log's write lock; the order's ``row_version`` makes the change fail at flush
if another one committed meanwhile (409 ``concurrent_update``), so concurrent
accept / dispute / resolve / revoke / auto-accept of one order have exactly one
outcome. Balances move by conditional ``UPDATE`` s at that flush
(:func:`exchange.accounts.service.at_flush`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.accounts.service import at_flush, now_ms, receipt_for
from exchange.errors import ConflictError, ForbiddenError
from exchange.idempotency import IdempotencyKey, Idempotent
from exchange.listings.models import ListingProvider
from exchange.log.models import LogEntry
from exchange.log.queries import entry_record, find_entry, promise_of
from exchange.log.schemas import Appended, PromiseBody
from exchange.orders.models import Order, OrderState
from exchange.orders.schemas import (
    DisputePayload,
    OrderChanged,
    OrderRefPayload,
    ResolvePayload,
    RevokePayload,
    SettlementPaid,
)
from exchange.orders.service import OrderNotFoundError, order_public
from exchange.orders.settle import (
    SettlementPlan,
    apply_refund,
    apply_settlement,
    escrow_refund,
    plan_settlement,
    provider_shares,
    refund_of,
    revocation_refund,
    settlements_of,
    stage_refund,
    stage_settlement,
)
from exchange.periodic import DecisionPass, each_in_its_own_transaction
from exchange.records import (
    SignedAction,
    commit_with_record,
    commit_with_records,
    exchange_action,
    log_receipt,
    payload_of,
)
from exchange.refprice.deals import stage_deal, withdraw_deal
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "AutoAcceptor",
    "accept",
    "auto_accept_due",
    "dispute",
    "rebuild_changed",
    "resolve",
    "revoke",
]

logger = logging.getLogger(__name__)

AUTO_ACCEPT_BATCH = 500
"""Most orders one :func:`auto_accept_due` pass settles (the next pass takes the rest)."""


class NotDeliveredError(ConflictError):
    code = "not_delivered"


class AcceptanceClosedError(ConflictError):
    code = "acceptance_closed"


class OrderNotOpenError(ConflictError):
    code = "order_not_open"


class NotDisputedError(ConflictError):
    code = "not_disputed"


class AlreadyRevokedError(ConflictError):
    code = "already_revoked"


class OrderClosedError(ConflictError):
    code = "order_closed"


class NotProviderError(ForbiddenError):
    code = "not_provider"


class NotDueError(ConflictError):
    """Internal to auto-accept: the order is no longer a delivered one past its deadline."""

    code = "not_due"


# --------------------------------------------------------------------------- checks


def _buyer_order(session: Session, order_id: str, buyer: str) -> Order:
    order = session.get(Order, order_id)
    if order is None or order.buyer_key_id != buyer:
        raise OrderNotFoundError(f"no order {order_id}")
    return order


def _check_decidable(order: Order, now: int) -> None:
    """Accept and dispute: the order is delivered and its acceptance window is open."""
    if order.state == OrderState.PLACED:
        raise NotDeliveredError(f"order {order.id} has not been delivered yet")
    if order.state != OrderState.DELIVERED:
        raise OrderNotOpenError(f"order {order.id} is {order.state}; it cannot change now")
    if order.acceptance_deadline is None or now >= order.acceptance_deadline:
        raise AcceptanceClosedError(
            f"the acceptance window of order {order.id} closed at {order.acceptance_deadline}"
        )


def _check_disputed(order: Order) -> None:
    if order.state != OrderState.DISPUTED:
        raise NotDisputedError(f"order {order.id} is {order.state}, not disputed")


def _check_due(order: Order, now: int) -> None:
    deadline = order.acceptance_deadline
    if order.state != OrderState.DELIVERED or deadline is None or deadline > now:
        raise NotDueError(f"order {order.id} is not awaiting auto-acceptance")


# --------------------------------------------------------------------------- settlement


def _settle(
    session: Session,
    order_id: str,
    cause: Callable[[Order], SignedAction],
    check: Callable[[Order], None],
    log_key: SM2PrivateKey,
    platform_fee_bp: int,
    idempotent: Idempotent | None = None,
) -> OrderChanged:
    """Settle the order's escrow, in one transaction with the record that decided it
    (``cause``, built from the order as checked) and the exchange's
    ``settlement.paid``. ``check`` refuses an order not in a settleable state."""
    order = session.get(Order, order_id)
    if order is None:
        raise OrderNotFoundError(f"no order {order_id}")
    check(order)
    shares = provider_shares(session, order.listing_id)
    action = cause(order)
    plan = plan_settlement(order, shares, platform_fee_bp)
    settlement = exchange_action(log_key, "settlement.paid", plan.payload())
    now = now_ms()

    def stage() -> None:
        stage_settlement(session, order, plan, settlement.submission.leaf_hash, now)
        if order.revoked_at is None:  # a revoked order is no comparable deal
            stage_deal(
                session,
                order_id=order.id,
                listing_id=order.listing_id,
                version=order.version,
                terms=order.terms,
                amount=plan.amount,
                settled_at=settlement.signed.record.timestamp,
                settled_leaf_hash=settlement.submission.leaf_hash,
            )
        if idempotent is not None:
            idempotent.stage(
                session,
                resource_id=order.id,
                leaf_hash=action.submission.leaf_hash,
                status_code=200,
            )

    with at_flush(session, lambda connection: apply_settlement(connection, plan)):
        _, [decided, paid] = commit_with_records(session, [action, settlement], log_key, stage)
    return OrderChanged(
        order=order_public(order, plan.public()),
        log=log_receipt(decided),
        settlement=_settlement_paid(plan, log_receipt(paid)),
    )


def _settlement_paid(plan: SettlementPlan, log: Appended) -> SettlementPaid:
    payload = plan.payload()
    return SettlementPaid(
        amount=payload["amount"],
        platform_fee=payload["platform_fee"],
        payouts=payload["payouts"],
        remainder_rule=payload["remainder_rule"],
        log=log,
    )


def accept(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    settings: Settings,
    idempotent: Idempotent,
) -> OrderChanged:
    """Apply a checked ``order.accepted`` (the buyer's): settle now."""
    payload = payload_of(action, OrderRefPayload)
    order = _buyer_order(session, payload.order_id, action.signed.record.actor)
    now = now_ms()
    return _settle(
        session,
        order.id,
        lambda _order: action,
        lambda checked: _check_decidable(checked, now),
        log_key,
        settings.platform_fee_bp,
        idempotent,
    )


def dispute(session: Session, action: SignedAction, log_key: SM2PrivateKey) -> OrderChanged:
    """Apply a checked ``order.disputed`` (the buyer's): the escrow stays frozen."""
    payload = payload_of(action, DisputePayload)
    order = _buyer_order(session, payload.order_id, action.signed.record.actor)
    now = now_ms()
    _check_decidable(order, now)

    def stage() -> None:
        order.state = OrderState.DISPUTED.value
        order.updated_at = now

    _, accepted = commit_with_record(session, action, log_key, stage)
    return OrderChanged(order=order_public(order), log=log_receipt(accepted))


def resolve(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    settings: Settings,
    idempotent: Idempotent,
) -> OrderChanged:
    """Apply a checked ``dispute.resolved`` (an operator's): ``release`` settles the
    escrow like an acceptance; ``refund`` returns it all to the buyer."""
    payload = payload_of(action, ResolvePayload)
    order = session.get(Order, payload.order_id)
    if order is None:
        raise OrderNotFoundError(f"no order {payload.order_id}")
    _check_disputed(order)
    if payload.outcome == "release":
        return _settle(
            session,
            order.id,
            lambda _order: action,
            _check_disputed,
            log_key,
            settings.platform_fee_bp,
            idempotent,
        )
    plan = escrow_refund(order)
    now = now_ms()
    leaf_hash = action.submission.leaf_hash

    def stage() -> None:
        stage_refund(session, order, plan, leaf_hash, now)
        idempotent.stage(session, resource_id=order.id, leaf_hash=leaf_hash, status_code=200)

    with at_flush(session, lambda connection: apply_refund(connection, plan)):
        _, accepted = commit_with_record(session, action, log_key, stage)
    return OrderChanged(order=order_public(order), log=log_receipt(accepted), refund=plan.public())


def revoke(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    idempotent: Idempotent,
) -> OrderChanged:
    """Apply a checked ``access.revoked`` (a provider of the order's listing): set
    ``revoked_at`` and refund as :func:`exchange.orders.settle.revocation_refund`
    says, in one transaction (a clawback a payee cannot cover refuses it all)."""
    payload = payload_of(action, RevokePayload)
    provider = action.signed.record.actor
    order = session.get(Order, payload.order_id)
    if order is None:
        raise OrderNotFoundError(f"no order {payload.order_id}")
    if session.get(ListingProvider, (order.listing_id, provider)) is None:
        raise NotProviderError("only a provider of the order's listing may revoke its access")
    if order.revoked_at is not None:
        raise AlreadyRevokedError(f"access to order {order.id} was revoked at {order.revoked_at}")
    if order.state == OrderState.REFUNDED:
        raise OrderClosedError(f"order {order.id} was refunded; there is no access to revoke")
    now = now_ms()
    plan = revocation_refund(session, order, now)
    leaf_hash = action.submission.leaf_hash

    def stage() -> None:
        order.revoked_at = now
        order.revocation_reason = payload.reason
        stage_refund(session, order, plan, leaf_hash, now)
        withdraw_deal(session, order.id)
        idempotent.stage(session, resource_id=order.id, leaf_hash=leaf_hash, status_code=200)

    with at_flush(session, lambda connection: apply_refund(connection, plan)):
        _, accepted = commit_with_record(session, action, log_key, stage)
    settled = settlements_of(session, [order]).get(order.id)
    return OrderChanged(
        order=order_public(order, settled), log=log_receipt(accepted), refund=plan.public()
    )


def rebuild_changed(session: Session, row: IdempotencyKey) -> OrderChanged:
    """The response of an accept / resolve / revoke made under an idempotency key
    whose response was not stored (a crash right after the commit): the order as
    it is now, the action's receipt, and the settlement (the ``settlement.paid``
    stored right after the action) or the refund it caused."""
    order = session.get(Order, row.resource_id)
    assert order is not None
    entry = (
        session.execute(
            select(LogEntry).where(col(LogEntry.leaf_hash) == bytes.fromhex(row.leaf_hash))
        )
        .scalars()
        .one()
    )
    settlement: SettlementPaid | None = None
    following = find_entry(session, entry.index + 1)
    if following is not None and following.record_type == "settlement.paid":
        paid = entry_record(following)["record"]["payload"]
        if paid.get("order_id") == order.id:
            promise = promise_of(session, following).to_dict()
            settlement = SettlementPaid(
                **{k: paid[k] for k in ("amount", "platform_fee", "payouts", "remainder_rule")},
                log=Appended(
                    index=following.index,
                    leaf_hash=promise["leaf_hash"],
                    promise=PromiseBody(**promise),
                ),
            )
    refund = None if settlement is not None else refund_of(session, row.leaf_hash)
    return OrderChanged(
        order=order_public(order, settlements_of(session, [order]).get(order.id)),
        log=receipt_for(session, row.leaf_hash),
        settlement=settlement,
        refund=refund,
    )


# --------------------------------------------------------------------------- auto-accept


def _auto_accepted(log_key: SM2PrivateKey) -> Callable[[Order], SignedAction]:
    def build(order: Order) -> SignedAction:
        payload = {"order_id": order.id, "acceptance_deadline": order.acceptance_deadline}
        return exchange_action(log_key, "order.auto_accepted", payload)

    return build


def auto_accept_due(
    session: Session, log_key: SM2PrivateKey, settings: Settings, now_ms: int
) -> int:
    """Accept (``order.auto_accepted``, signed by the log key) and settle every
    delivered order whose acceptance deadline is at or before ``now_ms``, each in
    its own transaction; return how many were settled.

    Idempotent and safe to run in several processes at once: an order that the
    buyer accepted or disputed meanwhile, or that another pass settled, is skipped
    (its row_version changed), never settled twice."""
    due = (
        session.execute(
            select(col(Order.id))
            .where(
                col(Order.state) == OrderState.DELIVERED.value,
                col(Order.acceptance_deadline) <= now_ms,
            )
            .order_by(col(Order.acceptance_deadline), col(Order.id))
            .limit(AUTO_ACCEPT_BATCH)
        )
        .scalars()
        .all()
    )
    session.rollback()  # end the read transaction before the writes
    return each_in_its_own_transaction(
        session,
        due,
        lambda order_id: _settle(
            session,
            order_id,
            _auto_accepted(log_key),
            lambda order: _check_due(order, now_ms),
            log_key,
            settings.platform_fee_bp,
        ),
        "auto-accept of order",
    )


class AutoAcceptor(DecisionPass):
    """Background thread: :func:`auto_accept_due` every ``interval`` seconds
    (each order is one transaction, so a failed pass leaves nothing half done)."""

    name = "auto-accept"

    def __init__(
        self,
        session_factory: Callable[[], Session],
        log_key: SM2PrivateKey,
        settings: Settings,
        *,
        interval: float,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(session_factory, log_key, interval=interval, clock=clock)
        self._settings = settings

    def decide(self, session: Session, now_ms: int) -> int:
        return auto_accept_due(session, self.log_key, self._settings, now_ms)
