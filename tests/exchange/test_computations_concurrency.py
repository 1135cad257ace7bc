"""Concurrent queries never overspend an order's allowance: many buyers' threads ask
at once for the last queries (per-query offers) or the last ε (per-budget
offers); exactly the allowance is reserved, the rest are refused with 409
``budget_exhausted``, and the allowance ends at zero, never below. SQLite and
PostgreSQL (when ``TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from test_auth_support import Exchange, running_exchange
from test_computations_support import Bought, buy_queries
from test_orders import BACKENDS

from exchange.books import assert_books_balance
from exchange.computations.models import Computation
from exchange.orders.models import Order

THREADS = 12


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def ask_at_once(bought: Bought) -> Counter[int]:
    barrier = threading.Barrier(THREADS)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        response = bought.ask()
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "budget_exhausted"
        with lock:
            statuses[response.status_code] += 1

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def stored(bought: Bought) -> tuple[int, int | None, int | None]:
    with bought.ex.app.state.session_factory() as session:
        count = session.execute(
            select(func.count())
            .select_from(Computation)
            .where(Computation.order_id == bought.order_id)  # type: ignore[arg-type]
        ).scalar_one()
        order = session.get(Order, bought.order_id)
        assert order is not None
        return int(count), order.queries_left, order.epsilon_left


def test_concurrent_queries_never_overspend_the_queries(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=5, private=False)
    statuses = ask_at_once(bought)
    assert statuses == Counter({201: 5, 409: THREADS - 5})
    assert stored(bought) == (5, 0, None)
    assert_books_balance(ex.app.state.engine)


def test_concurrent_queries_never_overspend_the_epsilon(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=None, unit="budget")  # ε 1.5 at 0.5 a query
    statuses = ask_at_once(bought)
    assert statuses == Counter({201: 3, 409: THREADS - 3})
    assert stored(bought) == (3, None, 0)
