"""Every quote the exchange issues, under each pricing model, parses with the one
shared class (:class:`ledger.protocol.quote.Quote`, the SDK's ``Quote``) and comes
back byte for byte: its signature still verifies and the exchange takes the
re-serialised quote in an order. Its refusals parse as the shared
:class:`ledger.protocol.errors.ErrorBody`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_auth_support import PROVIDER_CUSTODY, Exchange, running_exchange
from test_computations_support import offer
from test_orders import deposit, order_body, place, publish

import clients.sdk
from exchange.api.responses import ERROR_MESSAGES, error_example
from ledger.protocol.errors import ErrorBody
from ledger.protocol.quote import Quote
from ledger.records import canonical_json

TIERS = {
    "model": "tiers",
    "tiers": [
        {"up_to_rows": 1000, "price_per_1000_rows": 500},
        {"up_to_rows": None, "price_per_1000_rows": 200},
    ],
}
SUBSCRIPTION = {
    "model": "subscription",
    "price_per_period": 99_900,
    "period_days": 30,
    "max_periods": 12,
}

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("free", {"pricing": {"model": "free"}}, {}),
    ("fixed", {"pricing": {"model": "fixed", "price": 19_900}}, {}),
    ("fixed with seats", {"pricing": {"model": "fixed", "price": 500, "seats": 3}}, {}),
    ("tiers", {"pricing": TIERS, **PROVIDER_CUSTODY}, {"rows": 2_000}),
    ("tiers from a row", {"pricing": TIERS, **PROVIDER_CUSTODY}, {"rows": 10, "row_offset": 7}),
    ("subscription", {"pricing": SUBSCRIPTION}, {"periods": 2}),
    (
        "computation per query",
        {"computation": offer(unit="query"), **PROVIDER_CUSTODY},
        {"computation": True, "queries": 3},
    ),
    (
        "computation per budget",
        {"computation": offer(unit="budget"), **PROVIDER_CUSTODY},
        {"computation": True},
    ),
]


@pytest.fixture(scope="module")
def ex(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path_factory.mktemp("wire"), "sqlite") as exchange:
        yield exchange


def test_the_sdk_quote_is_the_shared_class() -> None:
    assert clients.sdk.Quote is Quote


@pytest.mark.parametrize(("listing", "terms"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_issued_quote_round_trips_byte_for_byte(
    ex: Exchange, listing: dict[str, Any], terms: dict[str, Any]
) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, **listing)
    response = ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={"terms": terms})
    assert response.status_code == 201, response.text
    issued = response.json()["quote"]

    quote = Quote.from_issued(response.json())
    assert canonical_json(quote.to_dict()) == canonical_json(issued)
    quote.verify(ex.app.state.log_key.public_key())
    assert {k: quote.terms.to_dict().get(k) for k in terms} == terms

    if quote.amount:
        assert deposit(ex, buyer, quote.amount).status_code == 201
    placed = place(ex, buyer, order_body(buyer, quote.to_dict()))
    assert placed.status_code == 201, placed.text
    assert placed.json()["order"]["amount"] == quote.amount


def test_a_refusal_parses_as_the_shared_error_body(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, pricing={"model": "fixed", "price": 300})
    issued = Quote.from_issued(
        ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={}).json()
    )
    assert deposit(ex, buyer, 300).status_code == 201
    thief = ex.register("buyer")
    refused = place(ex, thief, order_body(thief, issued.to_dict()))
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert ErrorBody.from_dict(body) == ErrorBody("quote_mismatch", body["message"])
    assert "buyer_key_id" in body["message"]


def test_every_documented_error_example_is_an_error_body() -> None:
    for code in ERROR_MESSAGES:
        example = error_example(400, code)
        assert ErrorBody.from_dict(example).to_dict() == example
