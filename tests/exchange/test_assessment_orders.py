"""Assessment orders (docs/quality.md): an approved assessor orders a listing's whole
version at 0 fen (terms purpose: assessment) without money or a seat; nobody else gets
a zero-price assessment and an assessor orders nothing else (403
``assessment_forbidden``); every refusal writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, error, running_exchange
from test_orders import BACKENDS, order_body, place, publish, quote

from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def assessor(ex: Exchange, *, approved: bool = True) -> SM2PrivateKey:
    key = ex.register("assessor", "评估机构")
    if approved:
        ex.approve(key)
    return key


def test_an_assessor_orders_at_zero_fen_without_money_or_a_seat(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = publish(ex, owner, pricing={"model": "fixed", "price": 50_000, "seats": 1})
    key = assessor(ex)
    q = quote(ex, key, listing_id, purpose="assessment")
    assert q["amount"] == 0
    assert q["terms"] == {
        "rows": None,
        "periods": None,
        "licence": "Shancheng standard data licence v1",
        "purpose": "assessment",
    }
    response = place(ex, key, order_body(key, q))
    assert response.status_code == 201, response.text
    ex.assert_logged(response, key, "order.placed")
    order = response.json()["order"]
    assert (order["amount"], order["escrow"], order["state"]) == (0, 0, "placed")
    assert order["terms"]["purpose"] == "assessment"
    assert response.json()["account"] == {**response.json()["account"], "available": 0, "held": 0}
    # the one seat is still for sale to a buyer
    buyer = ex.register("buyer")
    assert quote(ex, buyer, listing_id)["amount"] == 50_000
    assert ex.http(key).get(f"/orders/{order['id']}").status_code == 200


def test_zero_price_assessments_are_refused_to_everyone_else(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = publish(ex, owner)
    buyer = ex.register("buyer")
    auditor = ex.register("auditor")
    unapproved = assessor(ex, approved=False)
    key = assessor(ex)
    before = ex.log_size()

    def ask(who: SM2PrivateKey, **terms: Any) -> Any:
        return ex.http(who).post(f"/listings/{listing_id}/quotes", json={"terms": terms})

    error(ask(buyer, purpose="assessment"), 403, "assessment_forbidden")
    error(ask(unapproved, purpose="assessment"), 403, "assessment_forbidden")
    error(ask(key), 403, "assessment_forbidden")  # an assessor buys nothing
    error(ask(auditor, purpose="assessment"), 403, "role_forbidden")
    error(ask(owner, purpose="assessment"), 403, "role_forbidden")
    error(ask(key, purpose="assessment", periods=1), 422, "invalid_terms")
    error(ask(key, purpose="resale"), 422, "invalid_request")

    q = quote(ex, key, listing_id, purpose="assessment")
    # nobody else places an assessor's quote (and it names the assessor anyway)
    error(place(ex, buyer, order_body(buyer, q)), 403, "assessment_forbidden")
    other = assessor(ex)
    error(place(ex, other, order_body(other, q)), 422, "quote_mismatch")
    before = ex.log_size()
    # nor can the purpose be dropped: an assessor orders nothing else
    plain = {**q, "terms": {k: v for k, v in q["terms"].items() if k != "purpose"}}
    error(place(ex, key, order_body(key, plain)), 403, "assessment_forbidden")
    # a buyer's quote with the purpose added: a buyer orders no assessment
    bought = quote(ex, buyer, listing_id)
    added = {**bought, "terms": {**bought["terms"], "purpose": "assessment"}, "amount": 0}
    error(place(ex, buyer, order_body(buyer, added)), 403, "assessment_forbidden")
    assert ex.log_size() == before

    # an assessor suspended after its quote cannot place it
    suspended = ex.act(
        ex.operator,
        "POST",
        f"/participants/{key.key_id()}/suspend",
        "participant.suspended",
        {"participant": key.key_id(), "reason": "licence withdrawn"},
    )
    assert suspended.status_code == 200, suspended.text
    body = {"record": sign_record(key, "order.placed", {"order_id": _uuid(), "quote": q}).to_dict()}
    error(ex.http(key).post("/orders", json=body), 403, "participant_suspended")


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())
