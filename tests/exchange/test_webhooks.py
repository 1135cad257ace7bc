"""Webhooks on a real uvicorn with real local receivers, SQLite and PostgreSQL: every
event a participant may see arrives once, in feed order, signed by the exchange's
published log key; a receiver that is down for a while gets every event once it is
up; a 500 is retried; buyer B's webhook never gets buyer A's events; the
registration endpoints' refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col
from test_auth_support import error, running_exchange
from test_events_support import FAST_EVENTS, Market, make_market, wait_for, whole_feed
from test_orders import BACKENDS
from test_webhook_receiver import Receiver, free_port

from clients.sdk import WebhookVerificationError
from exchange.webhooks.models import WebhookAttempt
from ledger.sm2 import SM2PrivateKey, SM2PublicKey


@pytest.fixture(scope="module", params=BACKENDS)
def market(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Market]:
    tmp: Path = tmp_path_factory.mktemp("webhooks")
    with running_exchange(
        live_server, tmp, request.param, webhook_max_per_participant=3, **FAST_EVENTS
    ) as ex:
        yield make_market(ex)


def published_log_key(market: Market) -> SM2PublicKey:
    response = market.ex.http().get("/.well-known/shancheng/log-key")
    assert response.status_code == 200
    return SM2PublicKey.from_pem(response.json()["public_key"])


def register(market: Market, key: SM2PrivateKey, url: str, **body: Any) -> dict[str, Any]:
    response = market.ex.http(key).post("/webhooks", json={"url": url, **body})
    assert response.status_code == 201, response.text
    webhook: dict[str, Any] = response.json()["webhook"]
    return webhook


def delete(market: Market, key: SM2PrivateKey, webhook_id: str) -> None:
    response = market.ex.http(key).delete(f"/webhooks/{webhook_id}")
    assert response.status_code == 200, response.text


def lifecycle(market: Market, buyer: SM2PrivateKey, name: str) -> None:
    order_id = market.order(buyer, name)
    market.deliver(buyer, order_id)
    market.accept(buyer, order_id)


def feed_after(market: Market, key: SM2PrivateKey, cursor: str | None) -> list[dict[str, Any]]:
    events, _ = whole_feed(market.ex, key, after=cursor)
    return events


def test_each_event_arrives_once_in_order_signed_by_the_exchange(market: Market) -> None:
    log_key = published_log_key(market)
    with Receiver() as receiver:
        webhook = register(market, market.buyer_a, receiver.url)
        lifecycle(market, market.buyer_a, "A-hook")
        lifecycle(market, market.buyer_b, "B-hook")  # not A's: never sent to A's hook
        lifecycle(market, market.buyer_a, "A-hook-2")
        expected = feed_after(market, market.buyer_a, webhook["cursor"])
        assert len(expected) == 8
        wait_for(lambda: len(receiver.taken()) >= len(expected), "the deliveries")
        delete(market, market.buyer_a, webhook["id"])
    taken = receiver.taken()
    events = [delivery.verified(log_key) for delivery in taken]
    assert [e.id for e in events] == [e["id"] for e in expected]  # once each, in order
    assert all(e.order_id != market.orders["B-hook"] for e in events)
    for delivery, event in zip(taken, events, strict=True):
        headers = dict(delivery.headers)
        assert headers["Shancheng-Event-Id"] == event.id
        assert headers["Shancheng-Webhook-Id"] == webhook["id"]
        assert event.record is not None
        event.record.verify(_actor_key(market, event.record.record.actor))


def _actor_key(market: Market, key_id: str) -> SM2PublicKey:
    if key_id == market.ex.app.state.log_key.key_id():
        return published_log_key(market)
    response = market.ex.http().get(f"/participants/{key_id}")
    return SM2PublicKey.from_pem(response.json()["public_key"])


def test_a_receiver_down_for_a_while_gets_every_event(market: Market) -> None:
    log_key = published_log_key(market)
    port = free_port()  # nothing listens there yet: connections are refused
    url = f"http://127.0.0.1:{port}/hook"
    webhook = register(market, market.owner, url, event_types=["order.placed", "order.accepted"])
    lifecycle(market, market.buyer_a, "while-down-1")
    lifecycle(market, market.buyer_b, "while-down-2")
    wait_for(lambda: _failures(market, webhook["id"]) >= 3, "failed attempts while down")
    listed = market.ex.http(market.owner).get("/webhooks").json()["items"]
    [state] = [w for w in listed if w["id"] == webhook["id"]]
    assert state["attempts"] >= 3 and state["failing_since"] is not None
    assert state["last_error"] and state["delivered"] == 0
    expected = feed_after(market, market.owner, webhook["cursor"])
    expected = [e for e in expected if e["type"] in ("order.placed", "order.accepted")]
    assert len(expected) == 4
    with Receiver(port) as receiver:
        wait_for(lambda: len(receiver.taken()) >= len(expected), "the deliveries once up")
        delete(market, market.owner, webhook["id"])
    events = [delivery.verified(log_key) for delivery in receiver.taken()]
    assert [e.id for e in events] == [e["id"] for e in expected]
    attempts = market.ex.http(market.owner).get(f"/webhooks/{webhook['id']}/attempts")
    error(attempts, 404, "webhook_not_found")  # deleted with the webhook


def _failures(market: Market, webhook_id: str) -> int:
    with market.ex.app.state.session_factory() as session:
        rows = session.execute(
            select(WebhookAttempt).where(col(WebhookAttempt.webhook_id) == webhook_id)
        ).scalars()
        return sum(1 for row in rows if row.status is None)


def test_a_500_is_retried_until_the_receiver_takes_the_event(market: Market) -> None:
    log_key = published_log_key(market)
    with Receiver(statuses=[500, 503]) as receiver:
        webhook = register(market, market.buyer_b, receiver.url, event_types=["order.placed"])
        market.order(market.buyer_b, "retried")
        wait_for(lambda: receiver.taken(), "the delivery after the 5xx")
        attempts = market.ex.http(market.buyer_b).get(f"/webhooks/{webhook['id']}/attempts")
        assert attempts.status_code == 200, attempts.text
        delete(market, market.buyer_b, webhook["id"])
    statuses = [d.answered for d in receiver.deliveries]
    assert statuses == [500, 503, 200]
    ids = {d.verified(log_key).id for d in receiver.deliveries}
    assert len(ids) == 1  # the same event, three times: deduplicate by its id
    items = attempts.json()["items"]
    assert [(a["attempt"], a["status"]) for a in items] == [(3, 200), (2, 503), (1, 500)]
    assert {a["event_id"] for a in items} == ids


def test_a_webhook_starts_after_the_cursor_it_names(market: Market) -> None:
    start, _ = whole_feed(market.ex, market.buyer_a)
    assert len(start) >= 3
    with Receiver() as receiver:
        webhook = register(market, market.buyer_a, receiver.url, after=start[-3]["id"])
        wait_for(lambda: len(receiver.taken()) >= 2, "the events after the cursor")
        delete(market, market.buyer_a, webhook["id"])
    assert [d.verified(published_log_key(market)).id for d in receiver.taken()] == [
        e["id"] for e in start[-2:]
    ]


def test_a_tampered_delivery_does_not_verify(market: Market) -> None:
    log_key = published_log_key(market)
    with Receiver() as receiver:
        webhook = register(market, market.buyer_a, receiver.url, event_types=["order.placed"])
        market.order(market.buyer_a, "tamper")
        wait_for(lambda: receiver.taken(), "a delivery")
        delete(market, market.buyer_a, webhook["id"])
    delivery = receiver.taken()[0]
    delivery.verified(log_key)
    body = delivery.body.replace(b'"order.placed"', b'"order.refunded"')
    with pytest.raises(WebhookVerificationError, match="Content-Digest"):
        type(delivery)(delivery.method, delivery.url, delivery.headers, body, 200).verified(log_key)
    other_url = delivery.url.replace("/hook", "/other")
    with pytest.raises(WebhookVerificationError, match="signature"):
        type(delivery)(delivery.method, other_url, delivery.headers, delivery.body, 200).verified(
            log_key
        )
    with pytest.raises(WebhookVerificationError, match="not the log key"):
        delivery.verified(SM2PrivateKey.generate().public_key())


def test_registration_refusals(market: Market) -> None:
    client = market.ex.http(market.auditor)
    for bad in ("ftp://127.0.0.1/x", "http:///nohost", "http://127.0.0.1/x#f", "/relative"):
        error(client.post("/webhooks", json={"url": bad}), 422, "invalid_webhook_url")
    url = "http://127.0.0.1/x"
    error(
        client.post("/webhooks", json={"url": url, "after": "x"}),
        400,
        "invalid_cursor",
    )
    error(
        client.post("/webhooks", json={"url": url, "event_types": ["order.paid"]}),
        422,
        "invalid_request",
    )
    error(
        client.post("/webhooks", json={"url": url, "extra": 1}),
        422,
        "invalid_request",
    )
    created = [register(market, market.auditor, f"http://127.0.0.1:9/{n}") for n in range(3)]
    error(client.post("/webhooks", json={"url": url}), 409, "too_many_webhooks")
    listed = [w["id"] for w in client.get("/webhooks").json()["items"]]
    assert listed == [w["id"] for w in created]
    # nobody else sees or removes them; an operator may remove any
    other = market.ex.http(market.buyer_a)
    assert all(w["id"] not in listed for w in other.get("/webhooks").json()["items"])
    error(other.delete(f"/webhooks/{created[0]['id']}"), 404, "webhook_not_found")
    error(other.get(f"/webhooks/{created[0]['id']}/attempts"), 404, "webhook_not_found")
    assert (
        market.ex.http(market.ex.operator).delete(f"/webhooks/{created[0]['id']}").status_code
        == 200
    )
    for webhook in created[1:]:
        delete(market, market.auditor, webhook["id"])
    error(client.delete(f"/webhooks/{created[1]['id']}"), 404, "webhook_not_found")
    assert client.get("/webhooks").json() == {"items": []}
