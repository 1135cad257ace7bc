"""The delivery window: a paid order not delivered by its ``delivery_deadline`` is
refunded in full by the exchange.

:func:`refund_overdue` finds placed orders past their deadline and, for each, in
ONE transaction: the exchange's ``delivery.overdue`` record (signed by the log
key, payload ``{order_id, delivery_deadline, refund}``), the whole escrow back
to the buyer's available balance (a ``refund`` movement naming that record) and
the order → refunded. Any custody: an exchange-custody order whose content
never arrived is refunded too. A delivery that races it loses on the order's
``row_version`` (or is refused afterwards: 409 ``order_closed``), so an order
ends delivered or refunded, never both. :class:`OverdueRefunder` runs it
periodically beside auto-accept.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.accounts.service import at_flush
from exchange.errors import ConflictError
from exchange.orders.models import Order, OrderState
from exchange.orders.settle import apply_refund, escrow_refund, stage_refund
from exchange.periodic import DecisionPass, each_in_its_own_transaction
from exchange.records import commit_with_record, exchange_action
from ledger.sm2 import SM2PrivateKey

__all__ = ["DELIVERY_OVERDUE", "OVERDUE_BATCH", "OverdueRefunder", "refund_overdue"]

logger = logging.getLogger(__name__)

DELIVERY_OVERDUE = "delivery.overdue"
OVERDUE_BATCH = 500
"""Most orders one :func:`refund_overdue` pass refunds (the next pass takes the rest)."""


class NotOverdueError(ConflictError):
    """Internal: the order was delivered (or refunded) meanwhile."""

    code = "not_overdue"


def _refund_one(session: Session, log_key: SM2PrivateKey, order_id: str, now: int) -> None:
    order = session.get(Order, order_id, populate_existing=True)
    deadline = None if order is None else order.delivery_deadline
    if order is None or order.state != OrderState.PLACED or deadline is None or deadline >= now:
        raise NotOverdueError(f"order {order_id} is not awaiting delivery past its deadline")
    plan = escrow_refund(order)
    payload = {"order_id": order.id, "delivery_deadline": deadline, "refund": plan.amount}
    action = exchange_action(log_key, DELIVERY_OVERDUE, payload)

    def stage() -> None:
        stage_refund(session, order, plan, action.submission.leaf_hash, now)

    with at_flush(session, lambda connection: apply_refund(connection, plan)):
        commit_with_record(session, action, log_key, stage)


def refund_overdue(session: Session, log_key: SM2PrivateKey, now_ms: int) -> int:
    """Refund every placed order whose delivery deadline is before ``now_ms``, each in
    its own transaction; return how many were refunded. Safe to run in several
    processes at once (an order refunded or delivered meanwhile is skipped)."""
    due = (
        session.execute(
            select(col(Order.id))
            .where(
                col(Order.state) == OrderState.PLACED.value,
                col(Order.delivery_deadline) < now_ms,
            )
            .order_by(col(Order.delivery_deadline), col(Order.id))
            .limit(OVERDUE_BATCH)
        )
        .scalars()
        .all()
    )
    session.rollback()  # end the read transaction before the writes
    return each_in_its_own_transaction(
        session,
        due,
        lambda order_id: _refund_one(session, log_key, order_id, now_ms),
        "overdue refund of order",
    )


class OverdueRefunder(DecisionPass):
    """Background thread: :func:`refund_overdue` every ``interval`` seconds."""

    name = "overdue-refund"

    def decide(self, session: Session, now_ms: int) -> int:
        return refund_overdue(session, self.log_key, now_ms)
