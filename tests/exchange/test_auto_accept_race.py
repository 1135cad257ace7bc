"""Auto-accept passes running at once (SQLite; also PostgreSQL when
``TEST_POSTGRES_URL`` is set): two threads of one process sharing its engine, and
two acceptors each with its own engine (as two worker processes have) over the
same overdue delivered orders. Every order is settled exactly once, balances are
exact and the log holds one ``order.auto_accepted`` and one ``settlement.paid``
per order.

Each pass reads the due orders and then waits for the other pass to have read
them too, so both settle from the same (soon stale) list: either at once (the
passes contend for each order), or one after the other (the second pass finds
every order of its list already settled by the first — deterministically, not
only when the threads happen to interleave)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from test_auth_support import Exchange, running_exchange
from test_lifecycle_support import HOUR_MS, mark_delivered, now_ms, order_records
from test_order_lifecycle import FEE_BP, assert_order_balances, market, platform_balance
from test_orders import BACKENDS, balances

from exchange.db import make_engine
from exchange.orders.lifecycle import AutoAcceptor

ORDERS = 6
PASSES = 2


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, platform_fee_bp=FEE_BP, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


class _MeetAfterReading(Session):
    """A session whose first rollback — where a pass ends the transaction that read
    the due orders, before settling any — waits until every pass has read them,
    and then, if ``after`` is given, until that event is set."""

    def __init__(
        self,
        *args: Any,
        barrier: threading.Barrier,
        after: threading.Event | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self._barrier: threading.Barrier | None = barrier
        self._after = after

    def rollback(self) -> None:
        super().rollback()
        barrier, self._barrier = self._barrier, None
        if barrier is not None:
            barrier.wait(timeout=60)
            if self._after is not None:
                assert self._after.wait(timeout=120), "the first pass did not finish"


def _run_together(passes: list[Callable[[], int]], finished: list[threading.Event]) -> list[int]:
    results: list[int | BaseException | None] = [None] * len(passes)

    def run(i: int) -> None:
        try:
            results[i] = passes[i]()
        except BaseException as exc:  # reported below, in the test's thread
            results[i] = exc
        finally:
            finished[i].set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(passes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    assert all(isinstance(r, int) for r in results), results
    return [int(r) for r in results]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timing", "engines"),
    [
        ("at_once", "shared"),
        ("at_once", "one_per_acceptor"),
        ("one_after_the_other", "one_per_acceptor"),
    ],
)
def test_concurrent_auto_accept_passes_settle_each_order_once(
    ex: Exchange, timing: str, engines: str
) -> None:
    m = market(ex)
    orders = [m.buy() for _ in range(ORDERS)]
    for order_id in orders:
        mark_delivered(ex.app, order_id, deadline_in_ms=-1_000)
    barrier = threading.Barrier(PASSES)
    finished = [threading.Event() for _ in range(PASSES)]
    owned = []
    acceptors = []
    for n in range(PASSES):
        after = finished[n - 1] if timing == "one_after_the_other" and n > 0 else None
        if engines == "shared":
            engine = ex.app.state.engine
        else:
            engine = make_engine(ex.app.state.settings.resolved_database_url)
            owned.append(engine)
        factory = functools.partial(_MeetAfterReading, engine, barrier=barrier, after=after)
        acceptors.append(
            AutoAcceptor(
                factory,
                ex.app.state.log_key,
                ex.app.state.settings,
                interval=3600,
                clock=lambda: now_ms() + HOUR_MS,
            )
        )
    try:
        settled = _run_together([acceptor.run_once for acceptor in acceptors], finished)
    finally:
        for engine in owned:
            engine.dispose()

    assert sum(settled) == ORDERS, settled
    if timing == "one_after_the_other":
        assert settled == [ORDERS, 0]
    log_key = ex.app.state.log_key.key_id()
    for order_id in orders:
        types = [(r.type, r.actor) for r in order_records(ex.app, order_id)]
        assert types == [
            ("order.placed", m.buyer.key_id()),
            ("order.auto_accepted", log_key),
            ("settlement.paid", log_key),
        ], order_id
        assert assert_order_balances(ex, order_id) == {
            "escrow_hold": 10_007,
            "escrow_release": 10_007,
            "payout": 9_757,
            "fee": 250,
        }
    # fee 250, payouts 5854 / 3903 per order (test_order_lifecycle's exact split)
    assert balances(ex, m.owner) == (ORDERS * 5_854, 0)
    assert balances(ex, m.partner) == (ORDERS * 3_903, 0)
    assert platform_balance(ex) == (ORDERS * 250, 0)
    assert balances(ex, m.buyer) == (0, 0)
    # nothing is left to do
    again = AutoAcceptor(
        ex.app.state.session_factory,
        ex.app.state.log_key,
        ex.app.state.settings,
        interval=3600,
        clock=lambda: now_ms() + HOUR_MS,
    )
    assert again.run_once() == 0
