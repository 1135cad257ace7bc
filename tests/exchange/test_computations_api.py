"""Computations over a real uvicorn with signed requests: offers on listings,
computation orders and their allowance, the buyer's request, the provider's
result and answer, reads, events, and every refusal (status, code, nothing
written). SQLite; also PostgreSQL when ``TEST_POSTGRES_URL`` is set."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import PROVIDER_CUSTODY, Exchange, error, listing_content, running_exchange
from test_computations_support import (
    GOOD_SQL,
    PRICE_FEN,
    Bought,
    answer,
    buy_queries,
    complete,
    computation_listing,
    offer,
    refuse,
    seal,
    upload,
)
from test_lifecycle_support import set_order
from test_orders import BACKENDS, deposit, order_body, publish, quote

from exchange.books import assert_books_balance
from ledger.sm3 import sm3


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


# ------------------------------------------------------------------------- offers


def test_the_offer_is_stored_per_version_and_shown(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = computation_listing(ex, owner)
    listing = ex.http().get(f"/listings/{listing_id}").json()
    assert listing["computation"]["table"] == "ridership"
    assert listing["computation"]["price"] == {"unit": "query", "fen": PRICE_FEN}
    [version] = ex.http().get(f"/listings/{listing_id}/versions").json()
    assert version["computation"] == listing["computation"]
    plain = publish(ex, owner, **PROVIDER_CUSTODY)
    assert ex.http().get(f"/listings/{plain}").json()["computation"] is None
    hits = ex.http().get("/listings/search").json()["items"]
    shown = {hit["id"]: hit["computation"] for hit in hits}
    assert shown[listing_id] == listing["computation"] and shown[plain] is None


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"min_group_size": 0}, "payload.computation.min_group_size"),
        ({"table": "no such; table"}, "table"),
        ({"price": {"unit": "budget", "fen": 1}, "privacy": None}, "price.unit"),
        ({"extra": 1}, "payload.computation"),
    ],
)
def test_a_malformed_offer_is_refused_naming_its_path(
    ex: Exchange, change: dict[str, Any], path: str
) -> None:
    owner = ex.provider()
    payload = {"listing_id": str(uuid.uuid4()), **_content(owner, {**offer(), **change})}
    before = ex.log_size()
    response = ex.act(owner, "POST", "/listings", "listing.drafted", payload)
    assert path in error(response, 422, "invalid_payload")
    assert ex.log_size() == before


def _content(owner: Any, computation: dict[str, Any]) -> dict[str, Any]:
    return listing_content(owner.key_id(), computation=computation, **PROVIDER_CUSTODY)


def test_a_computation_offer_needs_provider_custody(ex: Exchange) -> None:
    owner = ex.provider()
    content = listing_content(owner.key_id(), computation=offer())  # exchange custody
    payload = {"listing_id": str(uuid.uuid4()), **content}
    before = ex.log_size()
    response = ex.act(owner, "POST", "/listings", "listing.drafted", payload)
    assert "provider custody" in error(response, 422, "invalid_payload")
    assert ex.log_size() == before


# ------------------------------------------------------------------------- orders


def test_a_computation_order_buys_an_allowance(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=3)
    order = bought.order()
    assert order["amount"] == 3 * PRICE_FEN
    assert order["terms"]["computation"] is True and order["terms"]["queries"] == 3
    assert order["queries_left"] == 3 and order["epsilon_left"] == "1.5"


def test_an_offer_priced_per_budget_buys_one_budget(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=None, unit="budget")
    order = bought.order()
    assert order["amount"] == PRICE_FEN
    assert order["queries_left"] is None and order["epsilon_left"] == "1.5"


@pytest.mark.parametrize(
    "terms",
    [
        {"computation": True},  # per query: queries required
        {"computation": True, "queries": 0},
        {"computation": True, "queries": 10_001},
        {"computation": True, "queries": 2, "rows": 5},
        {"queries": 2},
        {"computation": False},
    ],
)
def test_bad_computation_terms_are_refused(ex: Exchange, terms: dict[str, Any]) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = computation_listing(ex, owner)
    response = ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={"terms": terms})
    assert response.status_code == 422, response.text
    assert response.json()["code"] in ("invalid_terms", "invalid_request")


def test_a_listing_without_an_offer_sells_no_computation(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner)
    terms = {"terms": {"computation": True, "queries": 1}}
    response = ex.http(buyer).post(f"/listings/{listing_id}/quotes", json=terms)
    assert "offers no computation" in error(response, 422, "invalid_terms")


# ------------------------------------------------------------------------- the happy path


def test_a_query_is_requested_answered_and_downloaded(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=3)
    response = bought.ask()
    assert response.status_code == 201, response.text
    computation = response.json()["computation"]
    assert computation["state"] == "pending"
    assert computation["query_sm3"] == sm3(GOOD_SQL.encode()).hex()
    assert computation["epsilon_reserved"] == "0.5"
    ex.assert_logged(response, bought.buyer, "computation.requested")
    order = bought.order()
    assert (order["queries_left"], order["epsilon_left"]) == (2, "1")
    assert order["state"] == "placed"

    sealed, payload = seal(computation, bought.buyer)
    uploaded = upload(ex, bought.owner, computation["id"], sealed.ciphertext)
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {
        "computation_id": computation["id"],
        "ciphertext_sm3": payload["ciphertext_sm3"],
        "ciphertext_size": len(sealed.ciphertext),
    }
    done = answer(ex, bought.owner, computation["id"], "computation.completed", payload)
    assert done.status_code == 201, done.text
    ex.assert_logged(done, bought.owner, "computation.completed")
    shown = done.json()["computation"]
    assert shown["state"] == "completed" and shown["result_sm3"] == sealed.table.sm3_hex()
    assert [r["record"]["record"]["type"] for r in shown["records"]] == [
        "computation.requested",
        "computation.completed",
    ]
    order = bought.order()
    assert order["state"] == "delivered" and order["acceptance_deadline"] is not None
    assert (order["queries_left"], order["epsilon_left"]) == (2, "1")

    result = ex.http(bought.buyer).get(f"/computations/{computation['id']}/result")
    assert result.status_code == 200
    assert result.content == sealed.ciphertext
    assert result.headers["etag"] == f'"{payload["ciphertext_sm3"]}"'

    # a second answer delivers nothing new and leaves the order delivered
    second = bought.asked()
    assert complete(bought, second).status_code == 201
    assert bought.order()["state"] == "delivered"
    listed = ex.http(bought.owner).get("/computations", params={"order_id": bought.order_id})
    assert [c["id"] for c in listed.json()["items"]] == [second["id"], computation["id"]]
    assert_books_balance(ex.app.state.engine)


def test_a_refusal_gives_the_reservation_back(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=1)
    computation = bought.asked()
    assert bought.order()["queries_left"] == 0
    assert error(bought.ask(), 409, "budget_exhausted")
    response = refuse(bought, computation, "timeout")
    assert response.status_code == 201, response.text
    assert response.json()["computation"]["reason"] == "timeout"
    order = bought.order()
    assert (order["queries_left"], order["epsilon_left"], order["state"]) == (1, "1.5", "placed")
    assert order["escrow"] == PRICE_FEN  # nothing charged
    assert bought.ask().status_code == 201
    assert_books_balance(ex.app.state.engine)


def test_the_epsilon_budget_runs_out(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=None, unit="budget")  # 1.5 at 0.5 a query
    for _ in range(3):
        assert bought.ask().status_code == 201
    before = bought.state()
    message = error(bought.ask(), 409, "budget_exhausted")
    assert "ε 0 left" in message
    assert bought.state() == before


def test_a_non_private_offer_reserves_no_epsilon(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=2, private=False)
    computation = bought.asked("SELECT district, MAX(boardings) FROM ridership GROUP BY district")
    assert computation["epsilon_reserved"] == "0"
    assert bought.order()["epsilon_left"] is None
    assert complete(bought, computation).status_code == 201


# ------------------------------------------------------------------------- events


def test_the_feed_tells_the_providers_and_the_buyer(ex: Exchange) -> None:
    bought = buy_queries(ex)
    computation = bought.asked()
    refuse(bought, computation)
    for key in (bought.owner, bought.buyer):
        events = ex.http(key).get("/events", params={"limit": 100}).json()["events"]
        types = [e["type"] for e in events]
        assert "computation.requested" in types and "computation.refused" in types
    stranger = ex.register("buyer")
    events = ex.http(stranger).get("/events", params={"limit": 100}).json()["events"]
    assert not [e for e in events if e["type"].startswith("computation.")]


# ------------------------------------------------------------------------- refusals


def test_request_refusals_write_nothing(ex: Exchange) -> None:
    bought = buy_queries(ex, queries=1)
    other_buyer = ex.register("buyer")
    before = bought.state()
    assert error(bought.ask(buyer=other_buyer), 404, "order_not_found")
    assert error(bought.ask(order_id=str(uuid.uuid4())), 404, "order_not_found")
    refused = bought.ask("SELECT * FROM ridership")
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert (body["code"], body["reason"]) == ("query_refused", "returns_rows")
    assert body["message"].startswith("returns_rows: ")
    assert error(bought.ask("x" * 20_000), 422, "invalid_payload")
    bad = {"computation_id": "not-a-uuid", "order_id": bought.order_id, "sql": GOOD_SQL}
    response = ex.act(bought.buyer, "POST", "/computations", "computation.requested", bad)
    assert "computation_id" in error(response, 422, "invalid_payload")
    wrong_type = ex.act(bought.buyer, "POST", "/computations", "order.accepted", bad)
    error(wrong_type, 422, "wrong_record_type")
    assert bought.state() == before
    # a data order on the same listing is no computation order
    q = quote(ex, bought.buyer, bought.listing_id)
    assert deposit(ex, bought.buyer, q["amount"]).status_code == 201
    data_order = ex.http(bought.buyer).post("/orders", json=order_body(bought.buyer, q))
    before = bought.state()
    response = bought.ask(order_id=data_order.json()["order"]["id"])
    error(response, 409, "not_a_computation_order")
    assert bought.state() == before


def test_a_query_for_a_refunded_or_revoked_order_is_refused(ex: Exchange) -> None:
    bought = buy_queries(ex)
    for change, said in (
        ({"state": "refunded", "escrow": 0}, "refunded"),
        ({"state": "placed", "revoked_at": 1}, "revoked"),
        ({"state": "settled", "revoked_at": None}, "settled"),
        ({"state": "disputed"}, "disputed"),
    ):
        set_order(ex.app, bought.order_id, **change)
        before = bought.state()
        assert said in error(bought.ask(), 409, "order_closed")
        assert bought.state() == before


def test_a_query_for_an_unpaid_order_is_refused(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = computation_listing(ex, owner)
    q = quote(ex, buyer, listing_id, computation=True, queries=2)
    order_id = str(uuid.uuid4())
    unpaid = ex.http(buyer).post("/orders", json=order_body(buyer, q, order_id))
    error(unpaid, 402, "insufficient_funds")  # no escrow held, so no order exists
    bought = Bought(ex, owner, buyer, listing_id, order_id)
    before = bought.state()
    assert error(bought.ask(), 404, "order_not_found")
    assert bought.state() == before


def test_forged_answers_are_refused_and_write_nothing(ex: Exchange) -> None:
    bought = buy_queries(ex)
    computation = bought.asked()
    sealed, payload = seal(computation, bought.buyer)
    assert upload(ex, bought.owner, computation["id"], sealed.ciphertext).status_code == 200
    cid = computation["id"]
    outsider = ex.provider("outsider")
    before = bought.state()
    forged = answer(ex, outsider, cid, "computation.completed", payload)
    error(forged, 403, "not_a_provider")
    by_buyer = answer(ex, bought.buyer, cid, "computation.completed", payload)
    error(by_buyer, 403, "role_forbidden")
    unknown = str(uuid.uuid4())
    missing = answer(ex, bought.owner, unknown, "computation.completed", {**payload})
    error(missing, 404, "computation_not_found")
    wrong_query = {**payload, "query_sm3": sm3(b"SELECT 1").hex()}
    response = answer(ex, bought.owner, cid, "computation.completed", wrong_query)
    assert "query_sm3" in error(response, 422, "computation_mismatch")
    for epsilon in ("0.4", "0", "0.5000001"):
        response = answer(
            ex, bought.owner, cid, "computation.completed", {**payload, "epsilon_spent": epsilon}
        )
        assert response.status_code == 422, response.text
    wrong_result = {**payload, "ciphertext_sm3": "0" * 64}
    response = answer(ex, bought.owner, cid, "computation.completed", wrong_result)
    assert "ciphertext_sm3" in error(response, 422, "computation_mismatch")
    wrong_size = {**payload, "ciphertext_size": payload["ciphertext_size"] + 1}
    response = answer(ex, bought.owner, cid, "computation.completed", wrong_size)
    assert "ciphertext_size" in error(response, 422, "computation_mismatch")
    other_order = {**payload, "order_id": str(uuid.uuid4())}
    response = answer(ex, bought.owner, cid, "computation.completed", other_order)
    error(response, 422, "computation_mismatch")
    other_id = {**payload, "computation_id": unknown}
    error(answer(ex, bought.owner, cid, "computation.completed", other_id), 422, "invalid_payload")
    assert bought.state() == before
    # answered: no second answer, no re-upload
    assert answer(ex, bought.owner, cid, "computation.completed", payload).status_code == 201
    before = bought.state()
    error(refuse(bought, computation), 409, "computation_closed")
    error(upload(ex, bought.owner, cid, b"again"), 409, "computation_closed")
    assert bought.state() == before


def test_an_answer_needs_the_uploaded_result(ex: Exchange) -> None:
    bought = buy_queries(ex)
    computation = bought.asked()
    _, payload = seal(computation, bought.buyer)
    before = bought.state()
    response = answer(ex, bought.owner, computation["id"], "computation.completed", payload)
    error(response, 409, "result_missing")
    assert bought.state() == before


def test_upload_refusals(ex: Exchange) -> None:
    bought = buy_queries(ex)
    computation = bought.asked()
    outsider = ex.provider("outsider")
    error(upload(ex, outsider, computation["id"], b"x"), 404, "computation_not_found")
    error(upload(ex, bought.owner, str(uuid.uuid4()), b"x"), 404, "computation_not_found")
    error(upload(ex, bought.buyer, computation["id"], b"x"), 403, "role_forbidden")
    big = b"\0" * (16 * 1024 * 1024 + 1)
    error(upload(ex, bought.owner, computation["id"], big), 413, "result_too_large")
    set_order(ex.app, bought.order_id, state="refunded", escrow=0)
    error(upload(ex, bought.owner, computation["id"], b"x"), 409, "order_closed")


def test_a_completed_answer_after_a_refund_is_refused(ex: Exchange) -> None:
    bought = buy_queries(ex)
    computation = bought.asked()
    sealed, payload = seal(computation, bought.buyer)
    assert upload(ex, bought.owner, computation["id"], sealed.ciphertext).status_code == 200
    set_order(ex.app, bought.order_id, state="refunded", escrow=0)
    before = bought.state()
    response = answer(ex, bought.owner, computation["id"], "computation.completed", payload)
    error(response, 409, "order_closed")
    assert bought.state() == before


def test_reads_are_for_the_parties_only(ex: Exchange) -> None:
    bought = buy_queries(ex)
    computation = bought.asked()
    path = f"/computations/{computation['id']}"
    for key in (bought.buyer, bought.owner, ex.operator):
        assert ex.http(key).get(path).status_code == 200
    stranger = ex.register("buyer")
    error(ex.http(stranger).get(path), 404, "computation_not_found")
    listing = ex.http(stranger).get("/computations", params={"order_id": bought.order_id})
    error(listing, 404, "order_not_found")
    error(ex.http(bought.buyer).get(f"{path}/result"), 409, "not_completed")
    assert complete(bought, computation).status_code == 201
    error(ex.http(stranger).get(f"{path}/result"), 404, "computation_not_found")
    error(ex.http(bought.owner).get(f"{path}/result"), 403, "role_forbidden")
