"""Suspending a provider stops new sales of every listing it provides (alone or as a
co-provider): quotes and orders are refused with 409 ``provider_suspended`` and
nothing is written; orders already paid go on to delivery, acceptance and settlement
(docs/money.md, "Suspended providers")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, error, running_exchange
from test_lifecycle_support import mark_delivered
from test_order_lifecycle import Market, accept, assert_order_balances, market, placed_body
from test_orders import BACKENDS, balances, deposit, quote


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def _suspend(ex: Exchange, who: Any) -> None:
    response = ex.act(
        ex.operator,
        "POST",
        f"/participants/{who.key_id()}/suspend",
        "participant.suspended",
        {"participant": who.key_id(), "reason": "licence withdrawn"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("suspended", ["owner", "partner"])
def test_a_suspended_provider_sells_nothing_new_but_paid_orders_settle(
    ex: Exchange, suspended: str
) -> None:
    m: Market = market(ex)
    paid = m.buy()
    early = quote(ex, m.buyer, m.listing_id)  # a valid quote from before the suspension
    assert deposit(ex, m.buyer, early["amount"]).status_code == 201
    funds = balances(ex, m.buyer)

    _suspend(ex, getattr(m, suspended))
    before = ex.log_size()
    message = error(
        ex.http(m.buyer).post(f"/listings/{m.listing_id}/quotes", json={"terms": {}}),
        409,
        "provider_suspended",
    )
    assert getattr(m, suspended).key_id() in message
    error(
        ex.http(m.buyer).post("/orders", json=placed_body(m.buyer, early)),
        409,
        "provider_suspended",
    )
    assert ex.log_size() == before and balances(ex, m.buyer) == funds

    # the order paid before the suspension is delivered, accepted and settled as usual
    mark_delivered(ex.app, paid)
    response = accept(ex, m.buyer, paid)
    assert response.status_code == 200, response.text
    assert response.json()["order"]["state"] == "settled"
    sums = assert_order_balances(ex, paid)
    assert sums["payout"] == 10_007
