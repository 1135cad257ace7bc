"""The delivery window: a paid order not delivered in time is refunded in full by
the exchange (``delivery.overdue``), in either custody; a delivery after it is
refused; the money equations and the books hold; the event reaches the buyer and
the providers (SQLite; also PostgreSQL when ``TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, error, running_exchange
from test_custody_support import confirm, delivery_payload, provider_listing, put_deliverable
from test_delivery_support import listing_for, paid_order, publish_draft
from test_events_support import whole_feed
from test_orders import BACKENDS, balances

from exchange.books import assert_books_balance
from exchange.orders.overdue import refund_overdue
from ledger.records import SignedRecord


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def run_pass(ex: Exchange, now: int) -> int:
    with ex.app.state.session_factory() as session:
        return refund_overdue(session, ex.app.state.log_key, now)


def order_json(ex: Exchange, order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = ex.http(ex.operator).get(f"/orders/{order_id}").json()
    return body


def test_an_undelivered_order_is_refunded_in_full_after_its_window(ex: Exchange) -> None:
    owner, buyer, co = ex.provider(), ex.register("buyer"), ex.provider("co")
    providers = [
        {"key_id": owner.key_id(), "share_bps": 6000},
        {"key_id": co.key_id(), "share_bps": 4000},
    ]
    listing_id = provider_listing(ex, owner, delivery_window_s=60, providers=providers)
    order_id = paid_order(ex, buyer, listing_id)
    order = order_json(ex, order_id)
    deadline = order["delivery_deadline"]
    assert deadline == order["created_at"] + 60_000
    amount = order["amount"]
    assert amount > 0
    assert balances(ex, buyer) == (0, amount)

    assert run_pass(ex, deadline) == 0  # not past it yet
    assert order_json(ex, order_id)["state"] == "placed"
    assert run_pass(ex, deadline + 1) == 1
    refunded = order_json(ex, order_id)
    assert (refunded["state"], refunded["escrow"], refunded["delivery_deadline"]) == (
        "refunded",
        0,
        None,
    )
    assert balances(ex, buyer) == (amount, 0)  # paid = refund: every fen back
    assert balances(ex, owner) == (0, 0)
    assert run_pass(ex, deadline + 10_000) == 0  # once only
    assert_books_balance(ex.app.state.engine)

    movements = ex.http(buyer).get("/accounts/me").json()["movements"]
    [refund] = [m for m in movements if m["kind"] == "refund"]
    assert refund["amount"] == amount
    entry = next(
        e
        for e in (ex.entry(i) for i in range(ex.log_size()))
        if e["leaf_hash"] == refund["leaf_hash"]
    )
    signed = SignedRecord.from_dict(entry["record"])
    signed.verify(ex.app.state.log_key.public_key())
    assert signed.record.type == "delivery.overdue"
    assert dict(signed.record.payload) == {
        "order_id": order_id,
        "delivery_deadline": deadline,
        "refund": amount,
    }

    for key in (buyer, owner, co):
        events, _ = whole_feed(ex, key, type="delivery.overdue")
        assert [(e["type"], e["order_id"]) for e in events] == [("delivery.overdue", order_id)]
    stranger = ex.register("buyer")
    assert whole_feed(ex, stranger, type="delivery.overdue")[0] == []

    data = os.urandom(500)
    error(put_deliverable(ex, owner, order_id, data), 409, "order_closed")
    error(confirm(ex, owner, order_id, delivery_payload(ex, order_id, data)), 409, "order_closed")
    error(ex.http(buyer).get(f"/orders/{order_id}/content"), 409, "order_closed")
    assert_books_balance(ex.app.state.engine)


def test_exchange_custody_without_content_is_refunded_and_delivered_orders_are_not(
    ex: Exchange,
) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    never_uploaded = listing_for(ex, owner, b"rows\n", delivery_window_s=60)
    publish_draft(ex, owner, never_uploaded)
    stuck = paid_order(ex, buyer, never_uploaded)
    delivered_listing = provider_listing(ex, owner, delivery_window_s=60)
    delivered = paid_order(ex, buyer, delivered_listing)
    data = os.urandom(800)
    assert put_deliverable(ex, owner, delivered, data).status_code == 200
    assert confirm(ex, owner, delivered, delivery_payload(ex, delivered, data)).status_code == 201

    later = max(order_json(ex, o)["created_at"] for o in (stuck, delivered)) + 61_000
    assert run_pass(ex, later) == 1
    assert order_json(ex, stuck)["state"] == "refunded"
    assert order_json(ex, delivered)["state"] == "delivered"
    error(ex.http(buyer).post(f"/orders/{stuck}/delivery", json={}), 409, "order_closed")
    assert_books_balance(ex.app.state.engine)
