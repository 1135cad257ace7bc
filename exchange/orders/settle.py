"""The money of an order's end: settlement (escrow → providers and platform) and
refunds (escrow → buyer, or clawed back from the payees of a settled order).

Each function here either *plans* (pure integer arithmetic on a snapshot of the
order, :mod:`exchange.settlement`), *stages* (adds the movement rows and changes
the order, no flush) or *applies* (the conditional balance ``UPDATE``s, run by
:func:`exchange.accounts.service.at_flush` inside the log's append transaction).
A refusal raised while applying (a payee without the funds for a clawback) rolls
back the record, the order and every balance.

Per order, over all its movements (docs/money.md)::

    escrow_hold = escrow_release + refund
    escrow_release = Σ payout + fee
    buyer paid = Σ payout + fee + refund + settled_refund − Σ clawback

(``settled_refund`` = Σ ``clawback``: what is taken back is what the buyer gets.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from exchange.accounts.models import AccountMovement, MovementKind
from exchange.accounts.service import (
    credit,
    debit,
    movement,
    open_account,
    refund_held,
    release_held,
)
from exchange.errors import ConflictError
from exchange.listings.models import ListingProvider
from exchange.orders.models import Order, OrderState
from exchange.orders.schemas import RefundPublic, SettlementPublic
from exchange.settlement import PLATFORM, apportion, refund_unused, split
from ledger.protocol.accounts import PLATFORM_ACCOUNT

__all__ = [
    "REMAINDER_RULE",
    "ClawbackFundsError",
    "RefundPlan",
    "SettlementPlan",
    "apply_refund",
    "apply_settlement",
    "escrow_refund",
    "paid_period",
    "plan_settlement",
    "provider_shares",
    "refund_of",
    "revocation_refund",
    "settlements_of",
    "stage_refund",
    "stage_settlement",
]

REMAINDER_RULE: Final = "largest_remainder"
"""Named in ``settlement.paid``: fee rounded down, the providers' portion split by
the largest remainder method, equal remainders by ascending key id (docs/money.md)."""


class ClawbackFundsError(ConflictError):
    """A payee of a settled order no longer has the fen to give back."""

    code = "insufficient_funds"


# --------------------------------------------------------------------------- settlement


@dataclass(frozen=True, slots=True)
class SettlementPlan:
    """What settling an order's remaining escrow pays to whom (sums to ``amount``)."""

    order_id: str
    buyer: str
    amount: int
    platform_fee: int
    payouts: dict[str, int]

    def payload(self) -> dict[str, Any]:
        """The ``settlement.paid`` record's payload."""
        return {
            "order_id": self.order_id,
            "amount": self.amount,
            "platform_fee": self.platform_fee,
            "payouts": dict(self.payouts),
            "remainder_rule": REMAINDER_RULE,
        }

    def public(self) -> SettlementPublic:
        return SettlementPublic(
            amount=self.amount, platform_fee=self.platform_fee, payouts=dict(self.payouts)
        )


def provider_shares(session: Session, listing_id: str) -> dict[str, int]:
    """The listing's revenue shares (basis points by provider key id).

    Shares are stored per listing (``listing_provider``), not per version, and
    can only change while the listing is a draft or rejected (``edit``): once
    published — the only state in which it is sold — they are fixed, so these are
    the shares every order of every version was placed under."""
    rows = session.execute(
        select(col(ListingProvider.provider_key_id), col(ListingProvider.share_bps)).where(
            col(ListingProvider.listing_id) == listing_id
        )
    ).all()
    return {key_id: int(share) for key_id, share in rows}


def plan_settlement(
    order: Order, shares: Mapping[str, int], platform_fee_bp: int
) -> SettlementPlan:
    """Split the order's remaining escrow (:func:`exchange.settlement.split`)."""
    parts = split(order.escrow, shares, platform_fee_bp)
    fee = parts.pop(PLATFORM)
    return SettlementPlan(
        order_id=order.id,
        buyer=order.buyer_key_id,
        amount=order.escrow,
        platform_fee=fee,
        payouts=dict(sorted(parts.items())),
    )


def _movement_adder(
    session: Session, order: Order, leaf_hash: bytes, reference: str
) -> Callable[[str, MovementKind, int], None]:
    """``add(key_id, kind, amount)``: stage one movement of ``order`` naming the
    record ``leaf_hash``; a zero amount writes none (movements are positive)."""

    def add(key_id: str, kind: MovementKind, amount: int) -> None:
        if amount > 0:
            session.add(
                movement(
                    key_id,
                    kind,
                    amount,
                    leaf_hash=leaf_hash,
                    order_id=order.id,
                    reference=reference,
                )
            )

    return add


def stage_settlement(
    session: Session, order: Order, plan: SettlementPlan, leaf_hash: bytes, now: int
) -> None:
    """The order becomes settled with no escrow left; one movement per non-zero part
    (movements are positive amounts), all naming the ``settlement.paid`` record."""
    add = _movement_adder(session, order, leaf_hash, f"settlement of order {order.id}")

    add(plan.buyer, MovementKind.ESCROW_RELEASE, plan.amount)
    for key_id, amount in plan.payouts.items():
        add(key_id, MovementKind.PAYOUT, amount)
    add(PLATFORM_ACCOUNT, MovementKind.FEE, plan.platform_fee)
    order.state = OrderState.SETTLED.value
    order.escrow = 0
    order.updated_at = now


def apply_settlement(connection: Connection, plan: SettlementPlan) -> None:
    # every payee gets an account, in this transaction: a refused settlement leaves none
    for key_id in [*plan.payouts, PLATFORM_ACCOUNT]:
        open_account(connection, key_id)
    if plan.amount > 0:
        release_held(connection, plan.buyer, plan.amount)
    for key_id, amount in plan.payouts.items():
        if amount > 0:
            credit(connection, key_id, amount)
    if plan.platform_fee > 0:
        credit(connection, PLATFORM_ACCOUNT, plan.platform_fee)


_SETTLEMENT_KINDS = (MovementKind.ESCROW_RELEASE, MovementKind.PAYOUT, MovementKind.FEE)


def settlements_of(session: Session, orders: Iterable[Order]) -> dict[str, SettlementPublic]:
    """The settlement breakdown of each settled order among ``orders``, read back from
    its movements (one query); providers paid 0 fen (no movement) are listed with 0."""
    settled = [o for o in orders if o.state == OrderState.SETTLED]
    if not settled:
        return {}
    ids = [o.id for o in settled]
    rows = session.execute(
        select(
            col(AccountMovement.order_id),
            col(AccountMovement.key_id),
            col(AccountMovement.kind),
            col(AccountMovement.amount),
        ).where(
            col(AccountMovement.order_id).in_(ids),
            col(AccountMovement.kind).in_([k.value for k in _SETTLEMENT_KINDS]),
        )
    ).all()
    listing_ids = {o.listing_id for o in settled}
    providers = session.execute(
        select(col(ListingProvider.listing_id), col(ListingProvider.provider_key_id)).where(
            col(ListingProvider.listing_id).in_(listing_ids)
        )
    ).all()
    result: dict[str, SettlementPublic] = {}
    for order in settled:
        payouts = {key: 0 for listing, key in providers if listing == order.listing_id}
        result[order.id] = SettlementPublic(amount=0, platform_fee=0, payouts=payouts)
    for order_id, key_id, kind, amount in rows:
        part = result[order_id]
        if kind == MovementKind.ESCROW_RELEASE:
            part.amount += amount
        elif kind == MovementKind.FEE:
            part.platform_fee += amount
        else:
            part.payouts[key_id] = part.payouts.get(key_id, 0) + amount
    for part in result.values():
        part.payouts = dict(sorted(part.payouts.items()))
    return result


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """What goes back to the buyer: from the escrow, or clawed back from the payees."""

    buyer: str
    from_escrow: int = 0
    clawbacks: dict[str, int] = field(default_factory=dict)
    closes: bool = False
    """The whole escrow goes back and nothing was settled: the order becomes refunded."""

    @property
    def amount(self) -> int:
        return self.from_escrow + sum(self.clawbacks.values())

    def public(self) -> RefundPublic:
        return RefundPublic(
            amount=self.amount, from_escrow=self.from_escrow, clawbacks=dict(self.clawbacks)
        )


def escrow_refund(order: Order) -> RefundPlan:
    """All the remaining escrow back to the buyer (a dispute resolved with ``refund``)."""
    return RefundPlan(buyer=order.buyer_key_id, from_escrow=order.escrow, closes=True)


def paid_period(session: Session, order: Order) -> tuple[int, int]:
    """``[start, end)`` of a subscription's paid period: from placement, or for a
    renewal from where the renewed order's period ended if that was later."""
    assert order.access_expires_at is not None
    start = order.created_at
    if order.renews_order_id is not None:
        previous = session.get(Order, order.renews_order_id)
        if previous is not None and previous.access_expires_at is not None:
            start = max(start, previous.access_expires_at)
    return start, order.access_expires_at


def _paid_parts(session: Session, order_id: str) -> dict[str, int]:
    rows = session.execute(
        select(col(AccountMovement.key_id), col(AccountMovement.amount)).where(
            col(AccountMovement.order_id) == order_id,
            col(AccountMovement.kind).in_([MovementKind.PAYOUT.value, MovementKind.FEE.value]),
        )
    ).all()
    parts: dict[str, int] = {}
    for key_id, amount in rows:
        parts[key_id] = parts.get(key_id, 0) + int(amount)
    return parts


def revocation_refund(session: Session, order: Order, now: int) -> RefundPlan:
    """The refund owed when a provider revokes the buyer's access at ``now``:

    * never delivered (``placed``): the whole escrow (nothing was used);
    * a subscription: the unused part of the paid period, pro rata, rounded up
      (:func:`exchange.settlement.refund_unused` over :func:`paid_period`) — from
      the escrow if it is still held, else clawed back from the payees in
      proportion to what each was paid (:func:`exchange.settlement.apportion`);
    * a one-off sale: the whole escrow if not settled yet, nothing once settled.

    The order is closed (``refunded``) when the refund takes all of its escrow."""
    buyer = order.buyer_key_id
    if order.state == OrderState.PLACED:
        return RefundPlan(buyer=buyer, from_escrow=order.escrow, closes=True)
    settled = order.state == OrderState.SETTLED
    if order.access_expires_at is None:  # one-off
        if settled:
            return RefundPlan(buyer=buyer)
        return RefundPlan(buyer=buyer, from_escrow=order.escrow, closes=True)
    start, end = paid_period(session, order)
    owed = refund_unused(order.amount, start, end, now)
    if not settled:
        from_escrow = min(owed, order.escrow)
        return RefundPlan(buyer=buyer, from_escrow=from_escrow, closes=from_escrow == order.escrow)
    if owed == 0:
        return RefundPlan(buyer=buyer)
    parts = _paid_parts(session, order.id)
    clawbacks = {k: v for k, v in sorted(apportion(owed, parts).items()) if v > 0}
    return RefundPlan(buyer=buyer, clawbacks=clawbacks)


def stage_refund(
    session: Session, order: Order, plan: RefundPlan, leaf_hash: bytes, now: int
) -> None:
    add = _movement_adder(session, order, leaf_hash, f"refund of order {order.id}")

    add(plan.buyer, MovementKind.REFUND, plan.from_escrow)
    for key_id, amount in plan.clawbacks.items():
        add(key_id, MovementKind.CLAWBACK, amount)
    add(plan.buyer, MovementKind.SETTLED_REFUND, sum(plan.clawbacks.values()))
    order.escrow -= plan.from_escrow
    if plan.closes:
        order.state = OrderState.REFUNDED.value
    order.updated_at = now


def _clawback_refused(message: str) -> ClawbackFundsError:
    return ClawbackFundsError(f"the refund takes back fen already paid out, but {message}")


def apply_refund(connection: Connection, plan: RefundPlan) -> None:
    if plan.from_escrow > 0:
        refund_held(connection, plan.buyer, plan.from_escrow)
    for key_id, amount in plan.clawbacks.items():
        debit(connection, key_id, amount, _clawback_refused)
    clawed = sum(plan.clawbacks.values())
    if clawed > 0:
        credit(connection, plan.buyer, clawed)


def refund_of(session: Session, leaf_hash_hex: str) -> RefundPublic:
    """The refund a record caused, read back from its movements (zero if none)."""
    rows = session.execute(
        select(col(AccountMovement.key_id), col(AccountMovement.kind), col(AccountMovement.amount))
        .where(col(AccountMovement.leaf_hash) == leaf_hash_hex)
        .order_by(col(AccountMovement.key_id))
    ).all()
    from_escrow = 0
    clawbacks: dict[str, int] = {}
    for key_id, kind, amount in rows:
        if kind == MovementKind.REFUND:
            from_escrow += amount
        elif kind == MovementKind.CLAWBACK:
            clawbacks[key_id] = clawbacks.get(key_id, 0) + amount
    return RefundPublic(
        amount=from_escrow + sum(clawbacks.values()), from_escrow=from_escrow, clawbacks=clawbacks
    )
