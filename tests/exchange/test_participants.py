"""Participants over a real uvicorn (SQLite, and PostgreSQL when configured):
registration with proof of possession, approval, suspension, each a logged record
that is exactly the client-signed one; refusals write nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_auth_support import POSTGRES_URL, Exchange, error, running_exchange

from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def exchange(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Any:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with running_exchange(live_server, tmp_path, request.param) as ex:
        yield ex


def _registration(key: SM2PrivateKey, role: str = "provider", **payload: Any) -> dict[str, Any]:
    body = {"display_name": "渝数", "role": role, "public_key": key.public_key().to_pem().decode()}
    body.update(payload)
    return {"record": sign_record(key, "participant.registered", body).to_dict()}


def test_register_approve_suspend_each_logged_as_signed(exchange: Exchange) -> None:
    key = SM2PrivateKey.generate()
    response = exchange.http().post("/participants", json=_registration(key))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["participant"]["status"] == "unverified"
    assert body["participant"]["key_id"] == key.key_id()
    assert set(body["log"]) == {"index", "leaf_hash", "promise"}
    exchange.assert_logged(response, key, "participant.registered")

    public = exchange.http().get(f"/participants/{key.key_id()}")
    assert public.json()["role"] == "provider"

    approved = exchange.act(
        exchange.operator,
        "POST",
        f"/participants/{key.key_id()}/approve",
        "participant.approved",
        {"participant": key.key_id()},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["participant"]["status"] == "active"
    exchange.assert_logged(approved, exchange.operator, "participant.approved")

    suspended = exchange.act(
        exchange.operator,
        "POST",
        f"/participants/{key.key_id()}/suspend",
        "participant.suspended",
        {"participant": key.key_id(), "reason": "licence revoked"},
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["participant"]["status"] == "suspended"
    exchange.assert_logged(suspended, exchange.operator, "participant.suspended")
    error(exchange.http(key).get("/participants/me"), 403, "participant_suspended")
    assert exchange.log_size() == 3


def test_buyers_and_auditors_start_active(exchange: Exchange) -> None:
    for role in ("buyer", "auditor"):
        key = SM2PrivateKey.generate()
        response = exchange.http().post("/participants", json=_registration(key, role))
        assert response.json()["participant"]["status"] == "active"


def test_registration_refusals_write_nothing(exchange: Exchange) -> None:
    key = SM2PrivateKey.generate()
    other = SM2PrivateKey.generate()
    http = exchange.http()
    operator_pem = exchange.operator.public_key().to_pem().decode()
    signed_by_other = {
        "record": sign_record(
            other,
            "participant.registered",
            {
                "display_name": "x",
                "role": "buyer",
                "public_key": key.public_key().to_pem().decode(),
            },
        ).to_dict()
    }
    tampered = _registration(key)
    tampered["record"]["record"]["payload"]["display_name"] = "someone else"
    stale = {
        "record": sign_record(
            key,
            "participant.registered",
            {
                "display_name": "x",
                "role": "buyer",
                "public_key": key.public_key().to_pem().decode(),
            },
            timestamp=1_000,
        ).to_dict()
    }
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("operator role", _registration(key, "operator"), 422, "invalid_payload"),
        ("extra field", _registration(key, extra=1), 422, "invalid_payload"),
        ("empty name", _registration(key, display_name=""), 422, "invalid_payload"),
        ("not a key", _registration(key, public_key="nope"), 422, "invalid_payload"),
        ("actor is not the key", signed_by_other, 422, "key_mismatch"),
        ("tampered payload", tampered, 400, "invalid_signature"),
        ("stale record", stale, 422, "stale_record"),
        ("garbage record", {"record": {"x": 1}}, 400, "invalid_record"),
        ("no record", {}, 422, "invalid_request"),
        (
            "wrong type",
            {"record": sign_record(key, "listing.drafted", {}).to_dict()},
            422,
            "wrong_record_type",
        ),
    ]
    for desc, body, status, code in cases:
        response = http.post("/participants", json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), desc
    op_reg = {
        "record": sign_record(
            exchange.operator,
            "participant.registered",
            {"display_name": "x", "role": "buyer", "public_key": operator_pem},
        ).to_dict()
    }
    error(http.post("/participants", json=op_reg), 409, "already_registered")
    assert exchange.log_size() == 0
    assert http.post("/participants", json=_registration(key)).status_code == 201
    error(http.post("/participants", json=_registration(key)), 409, "already_registered")
    assert exchange.log_size() == 1


def test_operator_actions_refusals(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    provider = exchange.register("provider")
    before = exchange.log_size()
    op = exchange.operator

    def approve(target: str, payload: dict[str, Any], key: SM2PrivateKey = op) -> Any:
        return exchange.act(
            key, "POST", f"/participants/{target}/approve", "participant.approved", payload
        )

    error(approve(buyer.key_id(), {"participant": buyer.key_id()}), 409, "invalid_transition")
    error(approve(provider.key_id(), {"participant": buyer.key_id()}), 422, "target_mismatch")
    error(approve("0" * 64, {"participant": "0" * 64}), 404, "participant_not_found")
    error(
        approve(provider.key_id(), {"participant": provider.key_id()}, buyer), 403, "role_forbidden"
    )
    record = exchange.signed_body(op, "participant.approved", {"participant": provider.key_id()})
    http = exchange.http(op)
    path = f"/participants/{provider.key_id()}/approve"
    assert http.post(path, json=record).status_code == 200
    error(http.post(path, json=record), 409, "invalid_transition")
    # A record by someone else than the request's signer.
    other = exchange.signed_body(buyer, "participant.approved", {"participant": provider.key_id()})
    error(http.post(path, json=other), 403, "actor_mismatch")
    assert exchange.log_size() == before + 1


def test_profiles(exchange: Exchange) -> None:
    error(exchange.http().get("/participants/" + "0" * 64), 404, "participant_not_found")
    error(exchange.http().get("/participants/xyz"), 422, "invalid_request")
    op = exchange.http().get(f"/participants/{exchange.operator.key_id()}")
    assert op.json()["role"] == "operator"
