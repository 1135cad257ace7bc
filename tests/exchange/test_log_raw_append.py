"""The log's raw append (POST /log/records, /log/records:batch) over a real uvicorn:
only authenticated, active participants, only statements that change nothing
(note.*, attestation.*) by the signer itself, rate-limited per key; everything
else is refused and leaves the log as it was (exchange/raw_append.py)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_auth_support import POSTGRES_URL, Exchange, error, running_exchange

import exchange
from exchange.raw_append import RAW_NAMESPACES, is_raw_type
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def raw(key: SM2PrivateKey, record_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    signed = sign_record(key, record_type, payload)
    return {"record": signed.to_dict(), "public_key": key.public_key().to_pem().decode()}


_TYPE = re.compile(r"[a-z]+(?:_[a-z]+)*\.[a-z]+(?:_[a-z]+)*")


def action_types() -> set[str]:
    """Every record type the exchange's code names: the string constants of the
    ``exchange`` package shaped like a record type (``order.placed``, also some
    that are not types, like ``listing.id``: refused all the same), and the types
    of the signed records in the OpenAPI examples, which the generator builds
    with the real payload models. Derived, so a new action cannot be missed."""
    found: set[str] = set()
    package = Path(exchange.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if {"type", "schema_version", "actor", "timestamp", "payload"} <= value.keys():
                found.add(value["type"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads((package / "api" / "examples" / "examples.json").read_text("utf-8")))
    return {t for t in found if _TYPE.fullmatch(t) and not is_raw_type(t)}


def test_a_strangers_settlement_is_refused_and_nothing_is_logged(ex: Exchange) -> None:
    stranger = SM2PrivateKey.generate()
    settlement = raw(
        stranger,
        "settlement.paid",
        {"order_id": "bac623c9-3348-4cca-bb31-b509bf6718ac", "amount": 10**9, "payouts": {}},
    )
    before = ex.log_size()
    error(ex.http().post("/log/records", json=settlement), 401, "unauthenticated")
    error(ex.http(stranger).post("/log/records", json=settlement), 401, "unknown_key")
    batch = {"records": [settlement]}
    error(ex.http().post("/log/records:batch", json=batch), 401, "unauthenticated")
    error(ex.http(stranger).post("/log/records:batch", json=batch), 401, "unknown_key")
    # the same from a registered participant, and from an operator: still refused
    buyer = ex.register("buyer")
    for key in (buyer, ex.operator):
        error(
            ex.http(key).post("/log/records", json=raw(key, "settlement.paid", {"amount": 1})),
            403,
            "record_type_not_allowed",
        )
    assert ex.log_size() == before + 1  # the buyer's registration only


def test_exchange_actions_enter_the_log_only_through_their_endpoints(ex: Exchange) -> None:
    types = action_types()
    # the generator's story covers the actions of every part of the exchange
    assert {
        "participant.registered",
        "listing.published",
        "order.placed",
        "deposit.credited",
        "settlement.paid",
        "delivery.issued",
        "order.auto_accepted",
        "access.revoked",
    } <= types
    buyer = ex.register("buyer")
    http = ex.http(buyer)
    before = ex.log_size()
    for record_type in sorted(types):
        message = error(
            http.post("/log/records", json=raw(buyer, record_type, {"x": 1})),
            403,
            "record_type_not_allowed",
        )
        assert record_type in message and "note.*" in message
    mixed = {"records": [raw(buyer, "note.added", {"n": 1}), raw(buyer, "order.placed", {})]}
    assert error(
        http.post("/log/records:batch", json=mixed), 403, "record_type_not_allowed"
    ).startswith("records[1]: ")
    for lookalike in ("notes.added", "notes.note", "attestations.made", "order.note"):
        error(
            http.post("/log/records", json=raw(buyer, lookalike, {})),
            403,
            "record_type_not_allowed",
        )
    assert ex.log_size() == before


def test_statements_by_the_signer_are_appended(ex: Exchange) -> None:
    buyer, auditor = ex.register("buyer"), ex.register("auditor")
    provider = ex.provider()
    for key in (buyer, auditor, provider, ex.operator):
        for namespace in RAW_NAMESPACES:
            body = raw(key, f"{namespace}.added", {"text": "第一期数据已核对"})
            response = ex.http(key).post("/log/records", json=body)
            assert response.status_code == 201, response.text
            stored = ex.entry(response.json()["index"])
            assert SignedRecord.from_dict(stored["record"]) == SignedRecord.from_dict(
                body["record"]
            )
    batch = {"records": [raw(auditor, "attestation.checked", {"n": n}) for n in range(3)]}
    response = ex.http(auditor).post("/log/records:batch", json=batch)
    assert response.status_code == 201, response.text
    assert len(response.json()["appended"]) == 3


def test_only_the_signers_own_active_statements(ex: Exchange) -> None:
    buyer, other = ex.register("buyer"), ex.register("buyer")
    before = ex.log_size()
    # someone else's statement, even a genuine one with its key
    error(
        ex.http(buyer).post("/log/records", json=raw(other, "note.added", {})),
        403,
        "actor_mismatch",
    )
    batch = {"records": [raw(buyer, "note.added", {}), raw(other, "note.added", {})]}
    assert error(
        ex.http(buyer).post("/log/records:batch", json=batch), 403, "actor_mismatch"
    ).startswith("records[1]: ")
    # a provider an operator has not approved yet, and a suspended participant
    unverified = ex.register("provider")
    error(
        ex.http(unverified).post("/log/records", json=raw(unverified, "note.added", {})),
        403,
        "provider_unverified",
    )
    response = ex.act(
        ex.operator,
        "POST",
        f"/participants/{other.key_id()}/suspend",
        "participant.suspended",
        {"participant": other.key_id(), "reason": "spam"},
    )
    assert response.status_code == 200, response.text
    before = ex.log_size()
    error(
        ex.http(other).post("/log/records", json=raw(other, "note.added", {})),
        403,
        "participant_suspended",
    )
    assert ex.log_size() == before


def test_the_raw_append_is_rate_limited_per_key(live_server: Any, tmp_path: Path) -> None:
    with running_exchange(
        live_server, tmp_path, raw_append_rate_per_s=0.001, raw_append_burst=2
    ) as ex:
        buyer, other = ex.register("buyer"), ex.register("buyer")
        http = ex.http(buyer)
        for n in range(2):
            assert http.post("/log/records", json=raw(buyer, "note.added", {"n": n})).status_code
        batch = {"records": [raw(buyer, "note.added", {"n": n}) for n in (2, 3)]}
        before = ex.log_size()
        for response in (
            http.post("/log/records", json=raw(buyer, "note.added", {"n": 4})),
            http.post("/log/records:batch", json=batch),
        ):
            assert error(response, 429, "rate_limited")
            assert int(response.headers["Retry-After"]) >= 1
        assert ex.log_size() == before
        # another key has its own allowance; a full one admits a batch larger than
        # the burst once (then owes for it)
        big = {"records": [raw(other, "note.added", {"n": n}) for n in range(5)]}
        assert ex.http(other).post("/log/records:batch", json=big).status_code == 201
        response = ex.http(other).post("/log/records", json=raw(other, "note.added", {}))
        error(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) > 1000


def test_a_refused_append_is_not_a_server_error(ex: Exchange) -> None:
    buyer = ex.register("buyer")
    response = ex.http(buyer).post(
        "/log/records", content=b"{not json", headers={"content-type": "application/json"}
    )
    error(response, 422, "invalid_request")
    assert isinstance(response, httpx.Response)
