"""GET /listings/{id}/reference-price over a real uvicorn (SQLite; PostgreSQL when
``TEST_POSTGRES_URL`` is set): the comparables are exactly the settled deals of
other listings in the category and unit (not the listing's own, not unsettled,
not revoked, not another category or unit), the cost method comes from the signed
cost basis, the answer names no buyer, and replaying the public log's entries with
ledger.pricing_reference gives the same answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, listing_content, running_exchange
from test_lifecycle_support import mark_delivered
from test_order_lifecycle import accept, buy, revoke
from test_orders import BACKENDS, publish
from typer.testing import CliRunner

from clients.reference_audit import audit_reference_price
from clients.sdk import ExchangeClient
from exchange.cli import app as shancheng
from exchange.log.sequencer import integrate_pending
from exchange.refprice.models import ReferenceDeal
from exchange.refprice.service import as_of
from ledger.pricing_reference import AsOf, PublicRecords
from ledger.sm2 import SM2PrivateKey

COST = {
    "acquisition_fen": 300_000,
    "processing_fen": 100_001,
    "expected_units": 40,
    "margin_bp": 2_000,
}


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def settle(ex: Exchange, buyer: SM2PrivateKey, listing_id: str, **terms: Any) -> str:
    order_id = buy(ex, buyer, listing_id, **terms)
    mark_delivered(ex.app, order_id)
    assert accept(ex, buyer, order_id).status_code == 200
    return order_id


def reference(ex: Exchange, listing_id: str) -> dict[str, Any]:
    response = ex.http().get(f"/listings/{listing_id}/reference-price")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def replayed(ex: Exchange, listing_id: str, as_of: dict[str, int]) -> dict[str, Any]:
    """What an outsider computes from the public log's first ``log_size`` entries."""
    records = PublicRecords()
    last: dict[str, Any] = {}
    for index in range(as_of["log_size"]):
        last = ex.entry(index)
        records.add(last["record"]["record"], last["leaf_hash"])
    assert last["promise"]["timestamp"] == as_of["timestamp"]
    return records.reference_price(listing_id, AsOf(**as_of))


def test_reference_price_from_settled_deals(ex: Exchange) -> None:
    provider, other = ex.provider("subject"), ex.provider("other")
    buyers = [ex.register("buyer", f"buyer{i}") for i in range(3)]
    subject = publish(ex, provider, pricing={"model": "fixed", "price": 15_000}, cost_basis=COST)
    peers = [publish(ex, other, pricing={"model": "fixed", "price": p}) for p in (10_000, 14_000)]
    elsewhere = publish(ex, other, category="finance", pricing={"model": "fixed", "price": 9_000})
    per_period = publish(
        ex,
        other,
        pricing={
            "model": "subscription",
            "price_per_period": 3_000,
            "period_days": 30,
            "max_periods": 2,
        },
    )

    first = settle(ex, buyers[0], peers[0])
    answer = reference(ex, subject)
    assert answer["market"]["status"] == "insufficient_comparables"
    assert answer["market"]["median"] is None
    assert [c["order_id"] for c in answer["market"]["comparables"]] == [first]

    expected = [first]
    expected += [settle(ex, buyers[1], peers[0]), settle(ex, buyers[2], peers[1])]
    expected += [settle(ex, buyers[0], peers[1]), settle(ex, buyers[1], peers[1])]
    settle(ex, buyers[0], subject)  # its own
    settle(ex, buyers[1], elsewhere)  # another category
    settle(ex, buyers[2], per_period, periods=1)  # another unit
    buy(ex, buyers[2], peers[0])  # paid, never settled
    revoked = settle(ex, buyers[0], peers[0])
    assert revoke(ex, other, revoked).status_code == 200

    answer = reference(ex, subject)
    market = answer["market"]
    assert market["status"] == "ok"
    assert sorted(c["order_id"] for c in market["comparables"]) == sorted(expected)
    prices = sorted(c["adjusted_unit_price_fen"] for c in market["comparables"])
    assert prices == [10_000, 10_000, 14_000, 14_000, 14_000]
    assert (market["low"], market["median"], market["high"]) == (10_000, 14_000, 14_000)
    cost = answer["cost"]
    assert cost["total_fen"] == 400_001
    assert (cost["low"], cost["high"]) == (10_001, 12_001)  # ceil(400001/40), ceil(×1.2)
    assert answer["asking"] == {
        "unit_price_fen": 15_000,
        "position": {"market": "above", "cost": "above"},
    }
    text = str(answer)
    for buyer in buyers:
        assert buyer.key_id() not in text
    assert answer == replayed(ex, subject, answer["as_of"])
    # the view shows the cost basis it was computed from
    listing = ex.http().get(f"/listings/{subject}").json()
    assert listing["cost_basis"]["margin_bp"] == 2_000


def test_audit_recomputes_from_the_log_and_finds_a_tampered_deal(ex: Exchange) -> None:
    provider, other = ex.provider("subject"), ex.provider("other")
    buyer = ex.register("buyer", "b")
    subject = publish(ex, provider, cost_basis=COST)
    peer = publish(ex, other, pricing={"model": "fixed", "price": 12_345})
    order_id = settle(ex, buyer, peer)
    integrate_pending(ex.app.state.session_factory, ex.app.state.log_key)
    with ExchangeClient(ex.url) as client:
        result = audit_reference_price(client, subject)
        assert result.differences == []
        listing = client.listing(subject)
        normalised = {"storage_fen": 0, "compliance_fen": 0, "other_fen": 0, **COST}
        assert listing.cost_basis == normalised
        assert listing.content_fields()["cost_basis"] == normalised  # an edit keeps it
        assert client.reference_price(subject) == result.served
        assert result.recomputed["market"]["comparables"][0]["order_id"] == order_id
        with ex.app.state.session_factory() as session:  # the exchange's table lies
            deal = session.get(ReferenceDeal, order_id)
            assert deal is not None
            deal.unit_price_fen = 1
            session.commit()
        tampered = audit_reference_price(client, subject)
    assert tampered.differences == [
        "market.comparables[0].adjusted_unit_price_fen: 12345 != 1",
        "market.comparables[0].unit_price_fen: 12345 != 1",
    ]


def test_cli_shows_and_audits_the_reference_price(
    ex: Exchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ex.provider("subject")
    subject = publish(ex, provider, cost_basis=COST)
    integrate_pending(ex.app.state.session_factory, ex.app.state.log_key)
    monkeypatch.setenv("SHANCHENG_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv("SHANCHENG_EXCHANGE_URL", ex.url)
    runner = CliRunner()
    shown = runner.invoke(shancheng, ["buyer", "reference-price", subject, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["cost"]["low"] == 10_001
    human = runner.invoke(shancheng, ["buyer", "reference-price", subject])
    assert human.exit_code == 0, human.output
    assert "10001 fen – 12001 fen" in human.stdout
    assert "insufficient comparables (0)" in human.stdout
    view = runner.invoke(shancheng, ["buyer", "show", subject])
    assert view.exit_code == 0, view.output
    assert "asking 19900 fen per order: market no market range, cost above" in view.stdout
    audited = runner.invoke(
        shancheng, ["audit", "reference-price", subject, "--exchange", ex.url, "--json"]
    )
    assert audited.exit_code == 0, audited.output
    assert json.loads(audited.stdout)["ok"] is True


def log_size(ex: Exchange) -> int:
    with ex.app.state.session_factory() as session:
        return as_of(session).log_size


def test_cost_basis_refusals_write_nothing(ex: Exchange) -> None:
    provider = ex.provider("p")
    for bad in (
        {**COST, "processing_fen": -1},
        {**COST, "expected_units": 0},
        {**COST, "bonus_fen": 1},
        {**COST, "margin_bp": "2000"},
        [1, 2],
    ):
        before = log_size(ex)
        payload = {
            "listing_id": str(uuid.uuid4()),
            **listing_content(provider.key_id(), cost_basis=bad),
        }
        response = ex.act(provider, "POST", "/listings", "listing.drafted", payload)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_payload"
        assert "cost_basis" in response.json()["message"]
        assert log_size(ex) == before


def test_a_new_version_declares_its_own_cost_basis(ex: Exchange) -> None:
    provider = ex.provider("p")
    subject = publish(ex, provider, cost_basis=COST)
    version = {
        "listing_id": subject,
        "content_digest": "cd" * 32,
        "row_count": 5,
        "byte_size": 50,
        "format": "csv",
    }
    cheaper = {"other_fen": 1_000, "expected_units": 10, "margin_bp": 0}
    path = f"/listings/{subject}/versions"
    bad = ex.act(
        provider,
        "POST",
        path,
        "listing.version_added",
        {**version, "version": 2, "cost_basis": {**cheaper, "margin_bp": True}},
    )
    assert bad.status_code == 422 and "cost_basis.margin_bp" in bad.json()["message"]
    two = ex.act(
        provider,
        "POST",
        path,
        "listing.version_added",
        {**version, "version": 2, "cost_basis": cheaper},
    )
    assert two.status_code == 201, two.text
    answer = reference(ex, subject)
    assert (answer["version"], answer["cost"]["low"], answer["cost"]["high"]) == (2, 100, 100)
    three = ex.act(provider, "POST", path, "listing.version_added", {**version, "version": 3})
    assert three.status_code == 201, three.text
    assert reference(ex, subject)["cost"] is None
    answer = reference(ex, subject)
    assert answer == replayed(ex, subject, answer["as_of"])


def test_unknown_and_hidden_listings_are_404(ex: Exchange) -> None:
    provider = ex.provider("p")
    draft = ex.draft(provider)
    assert ex.http().get(f"/listings/{draft}/reference-price").status_code == 404
    owner_view = ex.http(provider).get(f"/listings/{draft}/reference-price")
    assert owner_view.status_code == 200
    assert owner_view.json()["market"]["status"] == "insufficient_comparables"
    missing = ex.http().get("/listings/00000000-0000-4000-8000-000000000000/reference-price")
    assert missing.status_code == 404
    assert missing.json()["code"] == "listing_not_found"
    assert ex.http().get("/listings/not-a-uuid/reference-price").status_code == 422
