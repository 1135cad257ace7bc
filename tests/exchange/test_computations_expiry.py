"""A computation no agent answers within its listing's delivery window is refused by
the exchange (``computation.refused`` signed by the log key, reason
``agent_timeout``) and its query given back; the agent's late answer is refused
(SQLite; also PostgreSQL when ``TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, error, running_exchange
from test_computations_support import answer, buy_queries, complete, seal, upload
from test_orders import BACKENDS

from exchange.books import assert_books_balance
from exchange.computations.expiry import refuse_unanswered
from ledger.records import SignedRecord

WINDOW_MS = 86_400 * 1000  # the listings' default delivery window


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def run_pass(ex: Exchange, now: int) -> int:
    with ex.app.state.session_factory() as session:
        return refuse_unanswered(session, ex.app.state.log_key, now)


def test_an_unanswered_computation_is_refused_and_its_query_given_back(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=1)
    computation = bought.asked()
    assert bought.order()["queries_left"] == 0
    due = computation["requested_at"] + WINDOW_MS

    assert run_pass(ex, due) == 0  # not past the window yet
    assert run_pass(ex, due + 1) == 1
    order = bought.order()
    assert (order["queries_left"], order["epsilon_left"], order["state"]) == (1, "1.5", "placed")
    shown = ex.http(bought.buyer).get(f"/computations/{computation['id']}").json()
    assert (shown["state"], shown["reason"]) == ("refused", "agent_timeout")
    refusal = SignedRecord.from_dict(shown["records"][-1]["record"])
    assert refusal.record.type == "computation.refused"
    refusal.verify(ex.app.state.log_key.public_key())  # the exchange's, not a provider's
    assert run_pass(ex, due + 10_000) == 0  # once only

    sealed, payload = seal(computation, bought.buyer)  # the agent wakes up
    error(upload(ex, bought.owner, computation["id"], sealed.ciphertext), 409, "computation_closed")
    late = answer(ex, bought.owner, computation["id"], "computation.completed", payload)
    error(late, 409, "computation_closed")
    assert ex.http(bought.buyer).get(f"/computations/{computation['id']}").json()["state"] == (
        "refused"
    )
    assert_books_balance(ex.app.state.engine)


def test_an_answered_computation_is_left_alone(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=2)
    computation = bought.asked()
    assert complete(bought, computation).status_code == 201
    assert run_pass(ex, computation["requested_at"] + WINDOW_MS + 1) == 0
    assert bought.order()["queries_left"] == 1
