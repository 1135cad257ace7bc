"""Idempotency keys over a real uvicorn (SQLite; also PostgreSQL when
``TEST_POSTGRES_URL`` is set):

* a body the idempotency fingerprint cannot canonicalise (RFC 8785) is the same
  400 ``invalid_record`` as on every other endpoint, never a 500;
* a replay after a crash between the commit and remembering the response gets,
  rebuilt, exactly the body the first call answered;
* requests racing with one key have one effect and all get that response.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session
from test_auth_support import Exchange, error, running_exchange
from test_lifecycle_support import DAY_MS, mark_delivered, now_ms, set_order
from test_order_lifecycle import SUBSCRIPTION, Market, accept, dispute, market, placed_body
from test_orders import BACKENDS, balances, deposit, quote

from exchange.books import assert_books_balance
from exchange.idempotency import IdempotencyKey, Idempotent
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, platform_fee_bp=250, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def post(
    ex: Exchange, key: SM2PrivateKey, path: str, body: Any, idempotency_key: str | None = None
) -> httpx.Response:
    """POST ``body`` as JSON with ASCII escapes (a lone surrogate is sent as ``\\udXXX``)."""
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    content = json.dumps(body, ensure_ascii=True).encode("ascii")
    return ex.http(key).post(path, content=content, headers=headers)


# --------------------------------------------------------------------------- hostile values


HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "float": lambda r: r["record"]["record"]["payload"].__setitem__("extra", 1000.0),
    "above 2^53-1": lambda r: r["record"]["record"]["payload"].__setitem__("extra", 2**53),
    "below -(2^53-1)": lambda r: r["record"]["record"]["payload"].__setitem__("extra", -(2**53)),
    "400 digits": lambda r: r["record"]["record"]["payload"].__setitem__("extra", 10**399),
    "schema_version 1.0": lambda r: r["record"]["record"].__setitem__("schema_version", 1.0),
    "lone surrogate": lambda r: r["record"]["record"]["payload"].__setitem__("extra", "a\ud800b"),
    "lone surrogate key": lambda r: r["record"]["record"]["payload"].__setitem__("\udfff", 1),
}


@dataclass
class Endpoints:
    """One valid signed request per idempotent endpoint: (who, path, body)."""

    requests: dict[str, tuple[SM2PrivateKey, str, dict[str, Any]]]


def _endpoints(ex: Exchange) -> Endpoints:
    m = market(ex)
    order_id = m.buy()
    q = quote(ex, m.buyer, m.listing_id)
    target = m.buyer.key_id()
    deposit_payload = {"participant": target, "amount": 5, "reference": "r"}
    return Endpoints(
        {
            "/orders": (m.buyer, "/orders", placed_body(m.buyer, q)),
            "accept": (
                m.buyer,
                f"/orders/{order_id}/accept",
                ex.signed_body(m.buyer, "order.accepted", {"order_id": order_id}),
            ),
            "resolve": (
                ex.operator,
                f"/orders/{order_id}/resolve",
                ex.signed_body(
                    ex.operator,
                    "dispute.resolved",
                    {"order_id": order_id, "outcome": "refund", "note": "n"},
                ),
            ),
            "revoke": (
                m.owner,
                f"/orders/{order_id}/revoke",
                ex.signed_body(m.owner, "access.revoked", {"order_id": order_id, "reason": "r"}),
            ),
            "deposits": (
                ex.operator,
                f"/accounts/{target}/deposits",
                ex.signed_body(ex.operator, "deposit.credited", deposit_payload),
            ),
        }
    )


def test_hostile_values_are_invalid_records_on_every_idempotent_endpoint(ex: Exchange) -> None:
    endpoints = _endpoints(ex)
    size = ex.log_size()
    for endpoint, (key, path, valid) in endpoints.requests.items():
        for name, spoil in HOSTILE.items():
            for idempotency_key in (None, f"k-{endpoint}-{len(name)}"):
                body = json.loads(json.dumps(valid))
                spoil(body)
                response = post(ex, key, path, body, idempotency_key)
                assert response.status_code == 400, (endpoint, name, response.text)
                error(response, 400, "invalid_record")
    assert ex.log_size() == size


# --------------------------------------------------------------------------- crash replay


@pytest.fixture
def crash_before_remember(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process "dies" between the effect's commit and storing its response:
    the key's row is committed with the effect, its response never written."""
    monkeypatch.setattr(Idempotent, "remember", lambda self, session, response: None)


def _replay(ex: Exchange, key: SM2PrivateKey, first: httpx.Response, idem: str) -> httpx.Response:
    assert first.request.url.path
    response = ex.http(key).post(
        first.request.url.path,
        content=first.request.content,
        headers={"Idempotency-Key": idem, "Content-Type": "application/json"},
    )
    assert response.status_code == first.status_code, response.text
    assert response.headers["Idempotent-Replayed"] == "true"
    return response


def _sell(ex: Exchange) -> tuple[Market, str]:
    m = market(ex, SUBSCRIPTION)
    return m, m.buy(periods=1)


@pytest.mark.usefixtures("crash_before_remember")
def test_a_replay_after_a_crash_rebuilds_the_first_response(ex: Exchange) -> None:
    m, settled = _sell(ex)
    refunded, released, clawed, from_escrow = (m.buy(periods=1) for _ in range(4))
    for order_id in (settled, refunded, released, clawed, from_escrow):
        mark_delivered(ex.app, order_id)
    for order_id in (refunded, released):
        assert dispute(ex, m.buyer, order_id).status_code == 200
    assert accept(ex, m.buyer, clawed).status_code == 200
    start = now_ms() - 10 * DAY_MS
    for order_id in (clawed, from_escrow):
        set_order(ex.app, order_id, created_at=start, access_expires_at=start + 30 * DAY_MS)

    calls: list[tuple[SM2PrivateKey, httpx.Response, str]] = []

    def call(key: SM2PrivateKey, path: str, body: dict[str, Any]) -> None:
        idem = f"crash-{len(calls)}"
        response = post(ex, key, path, body, idem)
        assert response.status_code in (200, 201), response.text
        calls.append((key, response, idem))

    buyer, op = m.buyer, ex.operator
    target = buyer.key_id()
    call(
        op,
        f"/accounts/{target}/deposits",
        ex.signed_body(
            op, "deposit.credited", {"participant": target, "amount": 40_000, "reference": "r"}
        ),
    )
    call(buyer, "/orders", placed_body(buyer, quote(ex, buyer, m.listing_id, periods=1)))
    call(
        buyer,
        f"/orders/{settled}/accept",
        ex.signed_body(buyer, "order.accepted", {"order_id": settled}),
    )
    for order_id, outcome in ((refunded, "refund"), (released, "release")):
        payload = {"order_id": order_id, "outcome": outcome, "note": "n"}
        call(op, f"/orders/{order_id}/resolve", ex.signed_body(op, "dispute.resolved", payload))
    for order_id in (clawed, from_escrow):
        payload = {"order_id": order_id, "reason": "breach"}
        call(
            m.owner,
            f"/orders/{order_id}/revoke",
            ex.signed_body(m.owner, "access.revoked", payload),
        )
    assert calls[-2][1].json()["refund"]["clawbacks"]  # a settled order: clawed back
    assert calls[-1][1].json()["refund"]["from_escrow"] > 0

    size = ex.log_size()
    for key, first, idem in calls:
        assert _replay(ex, key, first, idem).json() == first.json(), first.request.url.path
    assert ex.log_size() == size
    assert_books_balance(ex.app.state.engine)


@pytest.mark.usefixtures("crash_before_remember")
def test_a_replay_after_a_crash_answers_as_of_the_first_call(ex: Exchange) -> None:
    """The account moved on (and the order was delivered) between the crash and the
    replay: the replay still answers what the first call did, not the state now."""
    m = market(ex)
    buyer = m.buyer
    first_deposit = deposit(ex, buyer, 30_000, key="dep")
    assert first_deposit.status_code == 201
    q = quote(ex, buyer, m.listing_id)
    placed = post(ex, buyer, "/orders", placed_body(buyer, q), "order")
    assert placed.status_code == 201, placed.text
    assert deposit(ex, buyer, 5, key="later").status_code == 201
    mark_delivered(ex.app, placed.json()["order"]["id"])

    assert _replay(ex, ex.operator, first_deposit, "dep").json() == first_deposit.json()
    assert _replay(ex, buyer, placed, "order").json() == placed.json()


# --------------------------------------------------------------------------- racing keys


def _race(
    clients: list[httpx.Client], path: str, content: bytes, idem: str
) -> list[httpx.Response]:
    results: list[httpx.Response | None] = [None] * len(clients)
    barrier = threading.Barrier(len(clients))
    headers = {"Idempotency-Key": idem, "Content-Type": "application/json"}

    def send(i: int) -> None:
        barrier.wait()
        results[i] = clients[i].post(path, content=content, headers=headers, timeout=60)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    assert len(done) == len(clients)
    return done


def _one_response(results: list[httpx.Response]) -> dict[str, Any]:
    statuses = {r.status_code for r in results}
    assert len(statuses) == 1 and statuses <= {200, 201}, [r.text for r in results]
    bodies = [r.json() for r in results]
    assert all(b == bodies[0] for b in bodies), bodies
    replayed = [r.headers.get("Idempotent-Replayed") for r in results]
    assert replayed.count(None) == 1, replayed  # one effect; the others are replays
    body: dict[str, Any] = bodies[0]
    return body


@pytest.mark.parametrize("crash", [False, True], ids=["remembered", "crash"])
def test_racing_requests_with_one_key_have_one_effect(
    ex: Exchange, crash: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if crash:  # the losers must rebuild the winner's response
        monkeypatch.setattr(Idempotent, "remember", lambda self, session, response: None)
    m = market(ex)
    buyer = m.buyer
    target = buyer.key_id()
    size = ex.log_size()
    body = ex.signed_body(
        ex.operator, "deposit.credited", {"participant": target, "amount": 30_000, "reference": "r"}
    )
    content = json.dumps(body).encode()
    clients = [ex.http(ex.operator) for _ in range(6)]
    _one_response(_race(clients, f"/accounts/{target}/deposits", content, "race-deposit"))
    assert balances(ex, buyer) == (30_000, 0)

    order = placed_body(buyer, quote(ex, buyer, m.listing_id))
    clients = [ex.http(buyer) for _ in range(6)]
    placed = _one_response(_race(clients, "/orders", json.dumps(order).encode(), "race-order"))
    assert balances(ex, buyer) == (30_000 - 10_007, 10_007)

    order_id = placed["order"]["id"]
    mark_delivered(ex.app, order_id)
    accepted = ex.signed_body(buyer, "order.accepted", {"order_id": order_id})
    path = f"/orders/{order_id}/accept"
    clients = [ex.http(buyer) for _ in range(6)]
    settled = _one_response(_race(clients, path, json.dumps(accepted).encode(), "race-accept"))
    assert settled["order"]["state"] == "settled"
    assert ex.log_size() == size + 4  # deposit, order, acceptance and its settlement
    assert_books_balance(ex.app.state.engine)


def test_the_first_response_is_stored_for_the_replays(ex: Exchange) -> None:
    """The response is written to the key's row in the appender's batch after the
    effect's: once a later write has committed, the row holds exactly the first
    response (a replay reads it instead of rebuilding it)."""
    m = market(ex)
    q = quote(ex, m.buyer, m.listing_id)
    assert deposit(ex, m.buyer, q["amount"]).status_code == 201
    first = post(ex, m.buyer, "/orders", placed_body(m.buyer, q), "stored")
    assert first.status_code == 201, first.text
    m.buy()  # queued after the response's write: committed in the same batch or a later one
    with Session(ex.app.state.engine) as session:
        row = session.get(IdempotencyKey, (m.buyer.key_id(), "stored"))
    assert row is not None
    assert row.response == first.json()
    assert _replay(ex, m.buyer, first, "stored").json() == first.json()
