"""A computation order's allowance: queries left and micro-ε left, spent one query
at a time and never below zero, even under concurrent requests.

The request path checks early (:func:`check_open`, :func:`check_allowance`) on
a snapshot; what must hold is re-checked by conditional statements run in the
write transaction (:func:`exchange.log.batch.run_at_commit`): :func:`reserve`
decrements only ``WHERE queries_left >= 1 AND epsilon_left >= cost`` (and the
order still open), so of two concurrent requests for the last query one is
refused. ``None`` (SQL ``NULL``) means "not limited that way" and stays ``NULL``
under arithmetic. These statements do not bump the order's ``row_version``: a
query does not conflict with the order's lifecycle (accept, dispute, …);
:func:`deliver_first` does, since it changes the order's state.
"""

from __future__ import annotations

from sqlalchemy import Connection, or_, select, update
from sqlmodel import col

from exchange.computations.errors import BudgetExhaustedError
from exchange.orders.access import OrderClosedError
from exchange.orders.models import Order, OrderState
from exchange.pricing import epsilon_text

__all__ = [
    "OPEN_STATES",
    "check_allowance",
    "check_answerable",
    "check_open",
    "deliver_first",
    "give_back",
    "reserve",
]

OPEN_STATES = (OrderState.PLACED.value, OrderState.DELIVERED.value)
"""Orders that take queries: paid and not yet settled, refunded or disputed."""


def check_open(order_id: str, state: str, revoked_at: int | None) -> None:
    """409 ``order_closed`` unless the order takes queries."""
    if revoked_at is not None:
        raise OrderClosedError(f"the provider revoked access to order {order_id}")
    if state not in OPEN_STATES:
        raise OrderClosedError(f"order {order_id} is {state}; it takes no more queries")


def check_allowance(
    order_id: str, queries_left: int | None, epsilon_left: int | None, cost: int
) -> None:
    """409 ``budget_exhausted`` unless one more query of ``cost`` micro-ε fits."""
    if queries_left is not None and queries_left < 1:
        raise BudgetExhaustedError(f"every query of order {order_id} is used")
    if epsilon_left is not None and epsilon_left < cost:
        raise BudgetExhaustedError(
            f"order {order_id} has ε {epsilon_text(epsilon_left)} left; a query spends "
            f"{epsilon_text(cost)}"
        )


def reserve(connection: Connection, order_id: str, cost: int) -> None:
    """Take one query and ``cost`` micro-ε from the order, or refuse (409
    ``order_closed`` / ``budget_exhausted``) and change nothing."""
    result = connection.execute(
        update(Order)
        .where(
            col(Order.id) == order_id,
            col(Order.state).in_(OPEN_STATES),
            col(Order.revoked_at).is_(None),
            or_(col(Order.queries_left).is_(None), col(Order.queries_left) >= 1),
            or_(col(Order.epsilon_left).is_(None), col(Order.epsilon_left) >= cost),
        )
        .values(
            queries_left=col(Order.queries_left) - 1,
            epsilon_left=col(Order.epsilon_left) - cost,
        )
    )
    if result.rowcount == 1:
        return
    state, revoked_at, queries_left, epsilon_left = connection.execute(
        select(
            col(Order.state),
            col(Order.revoked_at),
            col(Order.queries_left),
            col(Order.epsilon_left),
        ).where(col(Order.id) == order_id)
    ).one()
    check_open(order_id, state, revoked_at)
    check_allowance(order_id, queries_left, epsilon_left, cost)
    raise BudgetExhaustedError(f"order {order_id} cannot pay for one more query")


def give_back(connection: Connection, order_id: str, cost: int) -> None:
    """Return a refused query's reservation to the order."""
    connection.execute(
        update(Order)
        .where(col(Order.id) == order_id)
        .values(
            queries_left=col(Order.queries_left) + 1,
            epsilon_left=col(Order.epsilon_left) + cost,
        )
    )


def check_answerable(order_id: str, state: str, revoked_at: int | None) -> None:
    """409 ``order_closed`` when a result may no longer reach the buyer (the order
    was refunded or its access revoked); a settled order still gets its answers."""
    if revoked_at is not None:
        raise OrderClosedError(f"the provider revoked access to order {order_id}")
    if state == OrderState.REFUNDED:
        raise OrderClosedError(f"order {order_id} was refunded; its queries are not answered")


def deliver_first(connection: Connection, order_id: str, now: int, window_ms: int) -> None:
    """The order's first answer delivers it: placed → delivered, its acceptance
    window opens (as a delivery's does). Refuses (409 ``order_closed``) when the
    order was refunded or revoked meanwhile."""
    state, revoked_at = connection.execute(
        select(col(Order.state), col(Order.revoked_at)).where(col(Order.id) == order_id)
    ).one()
    check_answerable(order_id, state, revoked_at)
    connection.execute(
        update(Order)
        .where(col(Order.id) == order_id, col(Order.state) == OrderState.PLACED.value)
        .values(
            state=OrderState.DELIVERED.value,
            delivered_at=now,
            acceptance_deadline=now + window_ms,
            updated_at=now,
            row_version=col(Order.row_version) + 1,
        )
    )
