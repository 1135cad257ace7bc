"""Accounts, quotes, orders with escrow, limited offers and idempotency keys over a
real uvicorn with signed requests (SQLite; money paths also on PostgreSQL when
``TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_auth_support import POSTGRES_URL, PROVIDER_CUSTODY, Exchange, error, running_exchange

from exchange.accounts.service import derived_balance
from exchange.quotes import Quote
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

DECLARATION = {"purpose": "internal_analytics", "processing_region": "CN", "legal_basis": None}
"""What the tests' orders declare (docs/policies.md): allowed by the default policy."""

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set"),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def publish(ex: Exchange, owner: SM2PrivateKey, **overrides: Any) -> str:
    listing_id = ex.draft(owner, **overrides)
    for key, action in ((owner, "submit"), (ex.operator, "review"), (ex.operator, "publish")):
        assert ex.step(key, listing_id, action).status_code == 200
    return listing_id


def deposit(
    ex: Exchange, who: SM2PrivateKey, amount: int, *, key: str | None = None
) -> httpx.Response:
    target = who.key_id()
    body = ex.signed_body(
        ex.operator, "deposit.credited", {"participant": target, "amount": amount, "reference": "t"}
    )
    headers = {"Idempotency-Key": key} if key else {}
    return ex.http(ex.operator).post(f"/accounts/{target}/deposits", json=body, headers=headers)


def quote(ex: Exchange, buyer: SM2PrivateKey, listing_id: str, **terms: Any) -> dict[str, Any]:
    response = ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={"terms": terms})
    assert response.status_code == 201, response.text
    q: dict[str, Any] = response.json()["quote"]
    return q


def order_body(buyer: SM2PrivateKey, q: dict[str, Any], order_id: str | None = None) -> Any:
    payload = {"order_id": order_id or str(uuid.uuid4()), "quote": q, "declaration": DECLARATION}
    return {"record": sign_record(buyer, "order.placed", payload).to_dict()}


def place(ex: Exchange, buyer: SM2PrivateKey, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return ex.http(buyer).post("/orders", json=body, headers=headers)


def balances(ex: Exchange, who: SM2PrivateKey) -> tuple[int, int]:
    account = ex.http(who).get("/accounts/me").json()["account"]
    with ex.app.state.session_factory() as session:
        assert derived_balance(session, who.key_id()) == (account["available"], account["held"])
    return account["available"], account["held"]


def test_deposit_quote_order_happy_path(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner)

    response = deposit(ex, buyer, 50_000)
    assert response.status_code == 201, response.text
    assert response.json()["account"] == {"key_id": buyer.key_id(), "available": 50_000, "held": 0}
    ex.assert_logged(response, ex.operator, "deposit.credited")

    q = quote(ex, buyer, listing_id)
    assert q["amount"] == 19_900 and q["buyer_key_id"] == buyer.key_id()
    assert q["listing_version"] == 1 and q["log_key_id"] == ex.app.state.log_key.key_id()
    Quote.from_dict(q)  # well formed

    order_id = str(uuid.uuid4())
    response = place(ex, buyer, order_body(buyer, q, order_id))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["order"]["id"] == order_id and body["order"]["state"] == "placed"
    assert body["order"]["escrow"] == 19_900 and body["order"]["version"] == 1
    assert body["account"]["available"] == 30_100 and body["account"]["held"] == 19_900
    ex.assert_logged(response, buyer, "order.placed")
    assert balances(ex, buyer) == (30_100, 19_900)
    movements = ex.http(buyer).get("/accounts/me").json()["movements"]
    assert [m["kind"] for m in movements] == ["escrow_hold", "deposit"]

    # read: buyer, provider, operator; not another buyer
    for who in (buyer, owner, ex.operator):
        assert ex.http(who).get(f"/orders/{order_id}").status_code == 200
    error(ex.http(ex.register("buyer")).get(f"/orders/{order_id}"), 404, "order_not_found")
    assert [o["id"] for o in ex.http(buyer).get("/orders").json()["items"]] == [order_id]
    mine = ex.http(owner).get("/orders", params={"role": "provider"}).json()["items"]
    assert [o["id"] for o in mine] == [order_id]
    assert ex.http(owner).get("/orders").json()["items"] == []

    # a used quote is refused, nothing moves
    before = ex.log_size()
    error(place(ex, buyer, order_body(buyer, q)), 409, "quote_used")
    assert ex.log_size() == before and balances(ex, buyer) == (30_100, 19_900)


def test_order_refusals_write_nothing(ex: Exchange) -> None:
    owner, buyer, other = ex.provider(), ex.register("buyer"), ex.register("buyer")
    listing_id = publish(ex, owner)
    assert deposit(ex, buyer, 10_000).status_code == 201
    q = quote(ex, buyer, listing_id)
    before = ex.log_size()

    error(place(ex, buyer, order_body(buyer, q)), 402, "insufficient_funds")
    tampered = {**q, "amount": 1}
    error(place(ex, buyer, order_body(buyer, tampered)), 422, "invalid_quote_signature")
    error(place(ex, buyer, order_body(buyer, {**q, "amount": "1"})), 422, "invalid_quote")
    # someone else's quote: the buyer differs
    assert deposit(ex, other, 100_000).status_code == 201
    before = ex.log_size()
    error(place(ex, other, order_body(other, q)), 422, "quote_mismatch")
    # the record signed by someone else than the request's signer
    error(place(ex, other, order_body(buyer, q)), 403, "actor_mismatch")
    error(place(ex, buyer, {"record": {"nope": 1}}), 400, "invalid_record")
    bad = {"record": sign_record(buyer, "order.placed", {"order_id": "x", "quote": q}).to_dict()}
    error(place(ex, buyer, bad), 422, "invalid_payload")
    error(ex.http(owner).post("/orders", json=order_body(owner, q)), 403, "role_forbidden")
    error(ex.http().post("/orders", json=order_body(buyer, q)), 401, "unauthenticated")
    assert ex.log_size() == before
    assert balances(ex, buyer) == (10_000, 0) and balances(ex, other) == (100_000, 0)

    # a delisted listing can no longer be bought, even with a valid quote
    assert deposit(ex, buyer, 20_000).status_code == 201
    assert ex.step(owner, listing_id, "delist", reason="gone").status_code == 200
    before = ex.log_size()
    error(place(ex, buyer, order_body(buyer, q)), 409, "listing_not_published")
    error(
        ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={}), 409, "listing_not_published"
    )
    assert ex.log_size() == before and balances(ex, buyer) == (30_000, 0)


def test_expired_quote_is_refused(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner)
    assert deposit(ex, buyer, 50_000).status_code == 201
    issued = Quote.from_dict(quote(ex, buyer, listing_id))
    # the same quote, genuinely signed by the exchange, but issued two hours ago for one
    ttl = issued.expires_at - issued.issued_at
    past = dataclasses.replace(
        issued,
        issued_at=issued.issued_at - 7_200_000,
        expires_at=issued.issued_at - 7_200_000 + ttl,
    )
    log_key = ex.app.state.log_key
    expired = dataclasses.replace(past, signature=log_key.sign(past.signed_bytes())).to_dict()
    before, orders = ex.log_size(), ex.http(buyer).get("/orders").json()["items"]

    error(place(ex, buyer, order_body(buyer, expired)), 409, "quote_expired")
    assert ex.log_size() == before
    assert ex.http(buyer).get("/orders").json()["items"] == orders == []
    assert balances(ex, buyer) == (50_000, 0)
    movements = ex.http(buyer).get("/accounts/me").json()["movements"]
    assert [m["kind"] for m in movements] == ["deposit"]
    # the quote as issued still buys
    assert place(ex, buyer, order_body(buyer, issued.to_dict())).status_code == 201


def test_quote_refusals(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    tiers = {
        "model": "tiers",
        "tiers": [
            {"up_to_rows": 1000, "price_per_1000_rows": 500},
            {"up_to_rows": None, "price_per_1000_rows": 200},
        ],
    }
    listing_id = publish(ex, owner, pricing=tiers, **PROVIDER_CUSTODY)
    assert quote(ex, buyer, listing_id, rows=2000)["amount"] == 700
    http = ex.http(buyer)
    error(http.post(f"/listings/{listing_id}/quotes", json={}), 422, "invalid_terms")
    error(
        http.post(f"/listings/{listing_id}/quotes", json={"terms": {"rows": 1.5}}),
        422,
        "invalid_request",
    )
    error(
        http.post(
            f"/listings/{listing_id}/quotes", json={"terms": {"rows": 5, "licence": "other"}}
        ),
        422,
        "invalid_terms",
    )
    error(http.post(f"/listings/{uuid.uuid4()}/quotes", json={}), 404, "listing_not_found")
    draft = ex.draft(owner)
    error(http.post(f"/listings/{draft}/quotes", json={}), 404, "listing_not_found")
    error(ex.http(owner).post(f"/listings/{listing_id}/quotes", json={}), 403, "role_forbidden")


def test_deposit_refusals_and_idempotency(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    other = ex.register("buyer").key_id()
    before = ex.log_size()
    error(deposit(ex, buyer, 0), 422, "invalid_payload")
    error(deposit(ex, SM2PrivateKey.generate(), 10), 404, "participant_not_found")
    body = ex.signed_body(
        buyer, "deposit.credited", {"participant": buyer.key_id(), "amount": 5, "reference": "r"}
    )
    error(
        ex.http(buyer).post(f"/accounts/{buyer.key_id()}/deposits", json=body),
        403,
        "role_forbidden",
    )
    body = ex.signed_body(
        ex.operator, "deposit.credited", {"participant": other, "amount": 5, "reference": "r"}
    )
    error(
        ex.http(ex.operator).post(f"/accounts/{buyer.key_id()}/deposits", json=body),
        422,
        "target_mismatch",
    )
    assert ex.log_size() == before

    target = buyer.key_id()
    body = ex.signed_body(
        ex.operator, "deposit.credited", {"participant": target, "amount": 700, "reference": "b1"}
    )
    http = ex.http(ex.operator)
    first = http.post(
        f"/accounts/{target}/deposits", json=body, headers={"Idempotency-Key": "dep-1"}
    )
    assert first.status_code == 201, first.text
    again = http.post(
        f"/accounts/{target}/deposits", json=body, headers={"Idempotency-Key": "dep-1"}
    )
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balances(ex, buyer) == (700, 0) and ex.log_size() == before + 1
    error(deposit(ex, buyer, 700, key="dep-1"), 422, "idempotency_key_reused")
    error(deposit(ex, buyer, 700, key="bad key"), 422, "invalid_idempotency_key")
    assert balances(ex, buyer) == (700, 0) and ex.log_size() == before + 1


def test_order_idempotency(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner)
    assert deposit(ex, buyer, 100_000).status_code == 201
    body = order_body(buyer, quote(ex, buyer, listing_id))
    first = place(ex, buyer, body, key="order-1")
    assert first.status_code == 201, first.text
    size = ex.log_size()
    again = place(ex, buyer, body, key="order-1")
    assert again.status_code == 201 and again.json() == first.json()
    other = order_body(buyer, quote(ex, buyer, listing_id))
    error(place(ex, buyer, other, key="order-1"), 422, "idempotency_key_reused")
    assert ex.log_size() == size and balances(ex, buyer) == (80_100, 19_900)
    # without a key, the same signed record again is a duplicate: no second effect
    error(place(ex, buyer, body), 409, "order_exists")
    assert balances(ex, buyer) == (80_100, 19_900)


@pytest.mark.slow
@pytest.mark.parametrize("pricing", [{"exclusive": True}, {"seats": 3}], ids=["exclusive", "seats"])
def test_limited_offer_never_oversells(ex: Exchange, pricing: dict[str, Any]) -> None:
    owner = ex.provider()
    listing_id = publish(ex, owner, pricing={"model": "fixed", "price": 1_000, **pricing})
    limit = pricing.get("seats", 1)
    # sell all seats but the last one
    for _ in range(limit - 1):
        early = ex.register("buyer")
        assert deposit(ex, early, 1_000).status_code == 201
        assert place(ex, early, order_body(early, quote(ex, early, listing_id))).status_code == 201
    buyers = [ex.register("buyer", f"racer {i}") for i in range(50)]
    bodies = []
    for buyer in buyers:
        assert deposit(ex, buyer, 5_000).status_code == 201
        bodies.append(order_body(buyer, quote(ex, buyer, listing_id)))
    size = ex.log_size()
    clients = [ex.http(b) for b in buyers]
    results: list[httpx.Response | None] = [None] * len(buyers)
    barrier = threading.Barrier(len(buyers))

    def race(i: int) -> None:
        barrier.wait()
        results[i] = clients[i].post("/orders", json=bodies[i], timeout=60)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(buyers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r.status_code if r is not None else 0 for r in results]
    assert statuses.count(201) == 1, statuses
    for r in results:
        assert r is not None
        if r.status_code != 201:
            error(r, 409, "sold_out")
    assert ex.log_size() == size + 1
    for buyer, r in zip(buyers, results, strict=True):
        assert r is not None
        expected = (4_000, 1_000) if r.status_code == 201 else (5_000, 0)
        assert balances(ex, buyer) == expected
    late = buyers[0]
    error(ex.http(late).post(f"/listings/{listing_id}/quotes", json={}), 409, "sold_out")


def test_quotes_are_rate_limited_per_key(live_server: Any, tmp_path: Path) -> None:
    """Each quote costs the exchange an SM2 signature: a key asking faster than
    quote_rate_per_s after quote_burst quotes is refused (429, Retry-After), and
    another key is not."""
    with running_exchange(
        live_server, tmp_path, "sqlite", quote_burst=3, quote_rate_per_s=0.001
    ) as ex:
        owner, eager, other = ex.provider(), ex.register("buyer"), ex.register("buyer")
        listing_id = publish(ex, owner)
        for _ in range(3):
            quote(ex, eager, listing_id)
        response = ex.http(eager).post(f"/listings/{listing_id}/quotes", json={"terms": {}})
        message = error(response, 429, "rate_limited")
        assert eager.key_id() in message
        assert int(response.headers["Retry-After"]) >= 1
        quote(ex, other, listing_id)
