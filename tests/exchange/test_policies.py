"""Usage policies enforced on real uvicorn (SQLite; PostgreSQL with TEST_POSTGRES_URL):
every clause refused with 422 ``policy_violation`` naming it and nothing written;
the agreement (declaration + policy digest) on the order and in its signed record;
cross-border assessments approved, rejected, expired and revoked while an order is
placed; the days of use ending access; policies on listing versions; hostile
policies and declarations refused; who may record and read assessments; the SDK's
pre-check and declaration."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from test_auth_support import Exchange, error, listing_content, running_exchange
from test_computations_support import buy_queries
from test_order_lifecycle import SUBSCRIPTION
from test_orders import BACKENDS, DECLARATION, balances, deposit, publish, quote
from test_refusals import database_state, place_meanwhile

from clients.sdk import ExchangeClient
from clients.sdk.errors import APIError
from ledger.protocol.policy import DEFAULT_POLICY, Policy
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

DAY_MS = 86_400_000
FAR = 4_102_444_800_000  # 2100-01-01, ms

POLICY: dict[str, Any] = {
    "permitted_purposes": ["academic_research", "public_service", "resale"],
    "prohibited_purposes": ["marketing"],
    "processing_regions": ["CN", "HK"],
    "access_days": 45,
    "onward_transfer": False,
    "attribution": "Source: Chongqing Transport Data",
}
IMPORTANT = {
    "classification": "重要",
    "personal_information": False,
    "source_legality": "Collected under contract 2025-17.",
    "permitted_purposes": ["research"],
}
PERSONAL = {**IMPORTANT, "classification": "一般", "personal_information": True}
PERSONAL["pi_legal_basis"] = "Riders' consent in the fare-card terms."


@pytest.fixture(scope="module", params=BACKENDS)
def ex(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Exchange]:
    tmp: Path = tmp_path_factory.mktemp("policies")
    with running_exchange(
        live_server, tmp, request.param, quote_burst=100_000, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def declared(purpose: str, region: str = "CN", legal_basis: str | None = None) -> dict[str, Any]:
    return {"purpose": purpose, "processing_region": region, "legal_basis": legal_basis}


def placed(buyer: SM2PrivateKey, q: dict[str, Any], declaration: Any) -> dict[str, Any]:
    payload = {"order_id": str(uuid.uuid4()), "quote": q, "declaration": declaration}
    return {"record": sign_record(buyer, "order.placed", payload).to_dict()}


def violation(response: httpx.Response, clause: str) -> str:
    """The refusal names ``clause`` (the first broken) in its body and message."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"code", "message", "clause"}, body
    assert body["code"] == "policy_violation" and body["clause"] == clause, body
    assert body["message"].startswith(f"{clause}: "), body
    return str(body["message"])


def funded_quote(ex: Exchange, buyer: SM2PrivateKey, listing_id: str, **terms: Any) -> Any:
    q = quote(ex, buyer, listing_id, **terms)
    assert deposit(ex, buyer, q["amount"]).status_code == 201
    return q


def assess(
    ex: Exchange, listing_id: str, buyer: SM2PrivateKey, approved: bool, **kw: Any
) -> httpx.Response:
    payload = {
        "listing_id": listing_id,
        "buyer": buyer.key_id(),
        "approved": approved,
        "reference": kw.pop("reference", "CAC 2026-0042"),
        "valid_until": kw.pop("valid_until", FAR if approved else None),
    }
    body = ex.signed_body(ex.operator, "crossborder.assessed", payload, **kw)
    return ex.http(ex.operator).post("/crossborder-assessments", json=body)


# --------------------------------------------------------------------------- the policy shown


def test_a_listing_shows_its_policy_and_every_quote_names_its_digest(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    with_policy = publish(ex, owner, policy=POLICY)
    listing = ex.http().get(f"/listings/{with_policy}").json()
    expected = Policy.from_dict(POLICY)
    assert listing["policy"] == expected.to_dict()
    assert listing["policy"]["permitted_purposes"] == sorted(POLICY["permitted_purposes"])
    assert listing["policy_digest"] == expected.digest()
    assert quote(ex, buyer, with_policy)["policy_digest"] == expected.digest()

    plain = publish(ex, owner)  # no policy given: the default one
    listing = ex.http().get(f"/listings/{plain}").json()
    assert listing["policy"] == DEFAULT_POLICY.to_dict()
    assert quote(ex, buyer, plain)["policy_digest"] == DEFAULT_POLICY.digest()


# --------------------------------------------------------------------------- each clause


# (clause, listing overrides, quote terms, a declaration breaking it, one complying)
CLAUSE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "permitted_purposes",
        {"policy": POLICY},
        {},
        declared("credit_scoring"),
        declared("public_service"),
    ),
    (
        "prohibited_purposes",
        {"policy": {"prohibited_purposes": ["marketing"]}},
        {},
        declared("marketing"),
        declared("credit_scoring", "US"),
    ),
    ("onward_transfer", {"policy": POLICY}, {}, declared("resale"), declared("academic_research")),
    (
        "processing_regions",
        {"policy": POLICY},
        {},
        declared("public_service", "SG"),
        declared("public_service", "HK"),
    ),
    (
        "access_days",
        {"policy": {"access_days": 30}, "pricing": SUBSCRIPTION},
        {"periods": 2},  # 60 days of a policy allowing 30
        declared("public_service"),
        declared("public_service"),
    ),
    (
        "cross_border",
        {"declarations": IMPORTANT},
        {},
        declared("academic_research", "DE"),
        declared("academic_research", "CN"),
    ),
    (
        "legal_basis",
        {"declarations": PERSONAL},
        {},
        declared("service_provision"),
        declared("service_provision", "CN", "consent"),
    ),
]


@pytest.mark.parametrize(
    ("clause", "listing", "terms", "breaking", "complying"),
    CLAUSE_CASES,
    ids=[case[0] for case in CLAUSE_CASES],
)
def test_each_clause_is_refused_by_name_and_nothing_is_written(
    ex: Exchange,
    clause: str,
    listing: dict[str, Any],
    terms: dict[str, Any],
    breaking: dict[str, Any],
    complying: dict[str, Any],
) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, **listing)
    q = funded_quote(ex, buyer, listing_id, **terms)
    before, money = database_state(ex), balances(ex, buyer)
    violation(ex.http(buyer).post("/orders", json=placed(buyer, q, breaking)), clause)
    assert database_state(ex) == before
    assert balances(ex, buyer) == money == (q["amount"], 0)
    if clause == "access_days":  # one period (30 days) is within the policy
        q = funded_quote(ex, buyer, listing_id, periods=1)
    response = ex.http(buyer).post("/orders", json=placed(buyer, q, complying))
    assert response.status_code == 201, response.text
    assert response.json()["order"]["declaration"] == complying


def test_a_complying_order_records_the_agreement(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, policy=POLICY)
    q = funded_quote(ex, buyer, listing_id)
    body = placed(buyer, q, declared("academic_research", "HK"))
    response = ex.http(buyer).post("/orders", json=body)
    assert response.status_code == 201, response.text
    order = response.json()["order"]
    digest = Policy.from_dict(POLICY).digest()
    assert order["declaration"] == declared("academic_research", "HK")
    assert order["policy_digest"] == digest
    assert order["use_until"] == order["created_at"] + 45 * DAY_MS
    # the signed record is the agreement: the buyer's declaration and the quote the
    # exchange signed with the policy's digest, as logged
    ex.assert_logged(response, buyer, "order.placed")
    stored = SignedRecord.from_dict(ex.entry(response.json()["log"]["index"])["record"])
    payload = stored.record.payload
    assert payload["declaration"] == declared("academic_research", "HK")
    assert payload["quote"]["policy_digest"] == digest


def test_a_quote_altered_to_another_policy_is_refused(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, policy=POLICY)
    q = funded_quote(ex, buyer, listing_id)
    q["policy_digest"] = DEFAULT_POLICY.digest()  # the exchange signed another digest
    response = ex.http(buyer).post("/orders", json=placed(buyer, q, DECLARATION))
    error(response, 422, "invalid_quote_signature")


BAD_DECLARATIONS = [
    ("missing", None),
    ("not an object", "academic_research"),
    ("unknown purpose", declared("spying")),
    ("region not ISO 3166-1", declared("academic_research", "China")),
    ("unknown legal basis", declared("academic_research", "CN", "whim")),
    ("unknown field", {**declared("academic_research"), "onward": True}),
]


@pytest.mark.parametrize(
    ("desc", "declaration"), BAD_DECLARATIONS, ids=[c[0] for c in BAD_DECLARATIONS]
)
def test_malformed_declarations_are_invalid_payload(
    ex: Exchange, desc: str, declaration: Any
) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    q = funded_quote(ex, buyer, publish(ex, owner))
    payload: dict[str, Any] = {"order_id": str(uuid.uuid4()), "quote": q}
    if declaration is not None:
        payload["declaration"] = declaration
    body = {"record": sign_record(buyer, "order.placed", payload).to_dict()}
    before = database_state(ex)
    message = error(ex.http(buyer).post("/orders", json=body), 422, "invalid_payload")
    assert "declaration" in message, desc
    assert database_state(ex) == before


# --------------------------------------------------------------------------- cross-border


def test_cross_border_needs_an_approved_unexpired_assessment(ex: Exchange) -> None:
    owner, buyer, other = ex.provider(), ex.register("buyer"), ex.register("buyer")
    listing_id = publish(ex, owner, declarations=IMPORTANT)
    abroad = declared("academic_research", "SG")

    message = violation(
        ex.http(buyer).post(
            "/orders", json=placed(buyer, funded_quote(ex, buyer, listing_id), abroad)
        ),
        "cross_border",
    )
    assert "no cross-border assessment" in message

    response = assess(ex, listing_id, buyer, False, reference="CAC 2026-0041 refused")
    assert response.status_code == 201, response.text
    q = funded_quote(ex, buyer, listing_id)
    message = violation(
        ex.http(buyer).post("/orders", json=placed(buyer, q, abroad)), "cross_border"
    )
    assert "rejected" in message

    response = assess(ex, listing_id, buyer, True)
    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["assessment"]["approved"] is True
    assert recorded["assessment"]["leaf_hash"] == recorded["log"]["leaf_hash"]
    response = ex.http(buyer).post("/orders", json=placed(buyer, q, abroad))
    assert response.status_code == 201, response.text

    # the approval is the buyer's alone, for this listing alone
    q_other = funded_quote(ex, other, listing_id)
    violation(ex.http(other).post("/orders", json=placed(other, q_other, abroad)), "cross_border")
    elsewhere = publish(ex, owner, declarations=IMPORTANT)
    q = funded_quote(ex, buyer, elsewhere)
    violation(ex.http(buyer).post("/orders", json=placed(buyer, q, abroad)), "cross_border")

    # expired: its validity ended (moved into the past in the database)
    with ex.app.state.engine.begin() as connection:
        connection.execute(
            text("UPDATE crossborder_assessment SET valid_until = 1 WHERE listing_id = :l"),
            {"l": listing_id},
        )
    q = funded_quote(ex, buyer, listing_id)
    message = violation(
        ex.http(buyer).post("/orders", json=placed(buyer, q, abroad)), "cross_border"
    )
    assert "expired" in message


def test_an_assessment_rejected_while_the_order_is_placed_refuses_it(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, declarations=IMPORTANT)
    assert assess(ex, listing_id, buyer, True).status_code == 201
    q = funded_quote(ex, buyer, listing_id)
    body = placed(buyer, q, declared("academic_research", "US"))

    def operator_rejects() -> None:
        assert assess(ex, listing_id, buyer, False).status_code == 201

    meanwhile = place_meanwhile(monkeypatch, ex, operator_rejects)
    before = database_state(ex)
    violation(ex.http(buyer).post("/orders", json=body), "cross_border")
    assert database_state(ex) == meanwhile.applied_to(before)
    assert balances(ex, buyer) == (q["amount"], 0)


def test_assessments_are_checked_before_they_are_recorded(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, declarations=IMPORTANT)
    before = database_state(ex)
    cases = [
        (assess(ex, listing_id, buyer, True, valid_until=None), 422, "invalid_payload"),
        (assess(ex, listing_id, buyer, True, valid_until=1), 422, "invalid_payload"),
        (assess(ex, listing_id, buyer, False, valid_until=FAR), 422, "invalid_payload"),
        (assess(ex, listing_id, owner, True), 422, "invalid_payload"),  # not a buyer
        (assess(ex, str(uuid.uuid4()), buyer, True), 404, "listing_not_found"),
        (
            assess(ex, listing_id, SM2PrivateKey.generate(), True),
            404,
            "participant_not_found",
        ),
        (assess(ex, listing_id, buyer, True, reference=""), 422, "invalid_payload"),
        (assess(ex, listing_id, buyer, "yes"), 422, "invalid_payload"),  # type: ignore[arg-type]
    ]
    for response, status, code in cases:
        error(response, status, code)
    assert database_state(ex) == before


def test_who_sees_which_assessments(ex: Exchange) -> None:
    owner, stranger = ex.provider(), ex.provider()
    buyer, other = ex.register("buyer"), ex.register("buyer")
    listing_id = publish(ex, owner, declarations=IMPORTANT)
    assert assess(ex, listing_id, buyer, True).status_code == 201
    assert assess(ex, listing_id, other, False).status_code == 201

    def seen(key: SM2PrivateKey, **params: str) -> set[tuple[str, bool]]:
        response = ex.http(key).get("/crossborder-assessments", params=params)
        assert response.status_code == 200, response.text
        return {(a["buyer"], a["approved"]) for a in response.json()["items"]}

    both = {(buyer.key_id(), True), (other.key_id(), False)}
    assert seen(ex.operator, listing_id=listing_id) == both
    assert seen(owner, listing_id=listing_id) == both  # the listing's provider
    assert seen(buyer) >= {(buyer.key_id(), True)}
    assert all(b == buyer.key_id() for b, _ in seen(buyer))
    assert seen(stranger) == set()
    assert seen(ex.operator, listing_id=listing_id, buyer=other.key_id()) == {
        (other.key_id(), False)
    }
    bad = ex.http(ex.operator).get("/crossborder-assessments", params={"buyer": "x"})
    error(bad, 422, "invalid_request")


# --------------------------------------------------------------------------- days of use


def test_access_ends_when_the_policys_days_of_use_end(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    data = os.urandom(800)
    listing_id = publish(
        ex, owner, policy=POLICY, content_digest=sm3(data).hex(), byte_size=len(data)
    )
    path = f"/listings/{listing_id}/versions/1/content"
    assert ex.http(owner).put(path, content=data).status_code == 201
    q = funded_quote(ex, buyer, listing_id)
    response = ex.http(buyer).post("/orders", json=placed(buyer, q, declared("public_service")))
    assert response.status_code == 201, response.text
    order_id = response.json()["order"]["id"]
    assert ex.http(buyer).post(f"/orders/{order_id}/delivery").status_code == 200
    with ex.app.state.engine.begin() as connection:
        connection.execute(text("UPDATE orders SET use_until = 1 WHERE id = :o"), {"o": order_id})
    message = error(ex.http(buyer).post(f"/orders/{order_id}/delivery"), 403, "access_expired")
    assert "usage policy" in message
    error(ex.http(buyer).get(f"/orders/{order_id}/content"), 403, "access_expired")


# --------------------------------------------------------------------------- versions


def test_a_version_keeps_or_replaces_the_policy(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, policy=POLICY)

    def add(version: int, **extra: Any) -> httpx.Response:
        payload = {
            "listing_id": listing_id,
            "version": version,
            "content_digest": f"{version:02x}" * 32,
            "row_count": 10,
            "byte_size": 100,
            "format": "csv",
            **extra,
        }
        return ex.act(
            owner, "POST", f"/listings/{listing_id}/versions", "listing.version_added", payload
        )

    kept = add(2)
    assert kept.status_code == 201, kept.text
    assert kept.json()["version"]["policy"] == Policy.from_dict(POLICY).to_dict()
    assert kept.json()["listing"]["policy_digest"] == Policy.from_dict(POLICY).digest()

    error(add(3, policy={"processing_regions": ["ZZ"]}), 422, "invalid_payload")
    replaced = add(3, policy={"prohibited_purposes": ["academic_research"]})
    assert replaced.status_code == 201, replaced.text
    versions = ex.http().get(f"/listings/{listing_id}/versions").json()
    assert [v["policy"] is not None for v in versions] == [True, True, True]
    assert versions[2]["policy"]["prohibited_purposes"] == ["academic_research"]
    # orders on version 3 follow version 3's policy
    q = funded_quote(ex, buyer, listing_id)
    violation(
        ex.http(buyer).post("/orders", json=placed(buyer, q, declared("academic_research"))),
        "prohibited_purposes",
    )
    response = ex.http(buyer).post("/orders", json=placed(buyer, q, declared("marketing", "US")))
    assert response.status_code == 201, response.text


BAD_LISTING_POLICIES = [
    (
        "bad region code",
        {"processing_regions": ["CN", "XK1"]},
        "payload.policy.processing_regions[1]",
    ),
    (
        "unknown purpose",
        {"permitted_purposes": ["surveillance"]},
        "payload.policy.permitted_purposes[0]",
    ),
    ("unknown field", {"purposes": ["research"]}, "payload.policy"),
    (
        "permitted and prohibited",
        {"permitted_purposes": ["marketing"], "prohibited_purposes": ["marketing"]},
        "payload.policy.prohibited_purposes",
    ),
]


@pytest.mark.parametrize(
    ("desc", "policy", "path"), BAD_LISTING_POLICIES, ids=[c[0] for c in BAD_LISTING_POLICIES]
)
def test_a_draft_with_a_malformed_policy_is_refused(
    ex: Exchange, desc: str, policy: dict[str, Any], path: str
) -> None:
    owner = ex.provider()
    payload = {"listing_id": str(uuid.uuid4()), **listing_content(owner.key_id(), policy=policy)}
    before = database_state(ex)
    response = ex.act(owner, "POST", "/listings", "listing.drafted", payload)
    assert error(response, 422, "invalid_payload").startswith(path), desc
    assert database_state(ex) == before


def test_a_policy_with_a_duplicate_key_is_refused_before_any_parser(ex: Exchange) -> None:
    owner = ex.provider()
    body = ex.signed_body(owner, "listing.drafted", {"listing_id": str(uuid.uuid4())})
    raw = json.dumps(body).replace(
        '"listing_id"', '"policy": {"access_days": 30, "access_days": 3650}, "listing_id"', 1
    )
    response = ex.http(owner).post(
        "/listings", content=raw.encode(), headers={"content-type": "application/json"}
    )
    error(response, 400, "invalid_json")


# --------------------------------------------------------------------------- the SDK


def test_the_sdk_warns_before_ordering_and_declares_what_it_is_told(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = publish(ex, owner, policy=POLICY, declarations=IMPORTANT)
    deposit(ex, buyer, 100_000)
    with ExchangeClient(ex.url, key=buyer) as client:
        warned = client.check_policy(listing_id, purpose="marketing", region="US")
        assert [v.clause for v in warned] == [
            "permitted_purposes",
            "prohibited_purposes",
            "processing_regions",
        ]  # cross_border: the exchange's to say
        assert client.check_policy(listing_id, purpose="public_service", region="CN") == []
        with pytest.raises(APIError) as refused:
            client.place_order(client.quote(listing_id), purpose="marketing")
        assert refused.value.status_code == 422 and refused.value.code == "policy_violation"
        with pytest.raises(APIError) as refused:  # HK is outside CN: 重要 data needs an assessment
            client.place_order(client.quote(listing_id), purpose="public_service", region="HK")
        assert refused.value.code == "policy_violation" and "cross_border" in refused.value.message
        order = client.place_order(client.quote(listing_id), purpose="public_service", region="CN")
        assert order.declaration is not None and order.declaration.purpose == "public_service"
        assert order.policy_digest == Policy.from_dict(POLICY).digest()
        renewed_from = client.order(order.id)
        assert renewed_from.declaration == order.declaration


def test_queries_end_with_the_days_of_use_of_their_order(ex: Exchange) -> None:
    """A computation is a use of the data under its order's agreement: no queries once
    the policy's days of use are over (the order's use_until, moved into the past)."""
    bought = buy_queries(ex)
    bought.asked()
    with ex.app.state.engine.begin() as connection:
        connection.execute(
            text("UPDATE orders SET use_until = 1 WHERE id = :o"), {"o": bought.order_id}
        )
    before = database_state(ex)
    message = error(bought.ask(), 403, "access_expired")
    assert "usage policy" in message
    assert database_state(ex) == before
