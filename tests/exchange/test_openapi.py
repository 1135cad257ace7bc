"""The OpenAPI document: every operation has tags, a summary and examples (request
body, every 2xx, every 4xx/5xx with one example per documented code), the examples
fit their schemas, the documented error codes are codes the exchange raises with
that status, and the stored examples (exchange/api/examples/examples.json) are
real: signatures verify, payloads parse with the endpoints' payload models, log
blocks match their records, proofs and the receipt check out."""

from __future__ import annotations

import base64
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import BaseModel

from exchange import errors, json_body
from exchange.accounts.schemas import DepositPayload
from exchange.api.examples import data, request_example, response_example
from exchange.api.responses import error_codes
from exchange.app import create_app
from exchange.certificates.schemas import RenewalRequestedPayload
from exchange.errors import ExchangeError
from exchange.listings.schemas import DraftPayload, ReasonPayload, TargetPayload, VersionPayload
from exchange.orders.schemas import (
    DisputePayload,
    OrderPayload,
    OrderRefPayload,
    ResolvePayload,
    RevokePayload,
)
from exchange.participants.schemas import ApprovedPayload, RegisteredPayload, SuspendedPayload
from exchange.payouts.schemas import WithdrawalPaid, WithdrawalRejected, WithdrawalRequested
from exchange.quotes import Quote
from exchange.settings import Settings
from ledger.bundle import Bundle
from ledger.checkpoint import Checkpoint, Promise
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.records import SignedRecord
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import sm3
from tools.openapi_examples.keys import KEY_LABELS, doc_key

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}
HANDLER_CODES = {
    "invalid_request": {422},
    "payload_too_large": {413},
    json_body.CODE: {400},
    errors.INTERNAL_CODE: {500},
}
"""Codes the app's handlers and middleware (exchange/errors.py, exchange/limits.py,
exchange/json_body.py) answer themselves."""

# operationId of each signed action → (the record type it takes, its payload model)
SIGNED_ACTIONS: dict[str, tuple[str, type[BaseModel]]] = {
    "register": ("participant.registered", RegisteredPayload),
    "approve": ("participant.approved", ApprovedPayload),
    "suspend": ("participant.suspended", SuspendedPayload),
    "create_listing": ("listing.drafted", DraftPayload),
    "edit_listing": ("listing.edited", DraftPayload),
    "submit_listing": ("listing.submitted", TargetPayload),
    "start_review": ("listing.review_started", TargetPayload),
    "publish_listing": ("listing.published", TargetPayload),
    "reject_listing": ("listing.rejected", ReasonPayload),
    "delist_listing": ("listing.delisted", ReasonPayload),
    "add_version": ("listing.version_added", VersionPayload),
    "credit_deposit": ("deposit.credited", DepositPayload),
    "place_order": ("order.placed", OrderPayload),
    "accept_order": ("order.accepted", OrderRefPayload),
    "dispute_order": ("order.disputed", DisputePayload),
    "resolve_dispute": ("dispute.resolved", ResolvePayload),
    "revoke_access": ("access.revoked", RevokePayload),
    "certificate_record": ("certificate.renewal_requested", RenewalRequestedPayload),
    "request_withdrawal": ("withdrawal.requested", WithdrawalRequested),
    "pay_withdrawal": ("withdrawal.paid", WithdrawalPaid),
    "reject_withdrawal": ("withdrawal.rejected", WithdrawalRejected),
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("openapi"),
        sequencer_enabled=False,
        anchor_worker_enabled=False,
    )
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def name_of(operation: dict[str, Any]) -> str:
    """The route function's name (FastAPI's operationId is ``<name>_<path>_<method>``)."""
    for name in (*SIGNED_ACTIONS, "post_records", "post_record", "request_delivery"):
        if operation["operationId"].startswith(f"{name}_"):
            return name
    return str(operation["operationId"])


def examples_of(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [named["value"] for named in media.get("examples", {}).values()]


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec["components"],
        **schema,
    }
    return jsonschema_rs.validator_for(root)


def raised_codes() -> dict[str, set[int]]:
    """Every ``code`` of an ExchangeError subclass and the statuses it comes with
    (create_app has imported every router, hence every error class)."""
    codes: dict[str, set[int]] = {k: set(v) for k, v in HANDLER_CODES.items()}
    pending = list(ExchangeError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        codes.setdefault(cls.code, set()).add(cls.status)
    return codes


# ---------------------------------------------------------------------- the document


def test_every_operation_has_tags_a_summary_and_a_request_example(spec: dict[str, Any]) -> None:
    count = 0
    for label, operation in operations(spec):
        count += 1
        assert operation.get("tags"), label
        assert operation.get("summary"), label
        body = operation.get("requestBody")
        if body is not None:
            for media_type, media in body["content"].items():
                assert examples_of(media), f"{label}: no example of its {media_type} body"
    assert count >= 40


def test_every_success_response_has_an_example(spec: dict[str, Any]) -> None:
    for label, operation in operations(spec):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, label
        for status, response in successes.items():
            content = response.get("content", {})
            assert content, f"{label} {status}: no content"
            for media_type, media in content.items():
                if media_type == "application/json":
                    assert examples_of(media), f"{label} {status}: no example"
                else:  # a binary download: its headers say what it is
                    assert media["schema"] == {"type": "string", "format": "binary"}
                    headers = response.get("headers", {})
                    assert headers, f"{label} {status}: no headers"
                    for name, header in headers.items():
                        assert "example" in header, f"{label} {status}: no example of {name}"


def test_every_error_response_has_an_example_per_documented_code(spec: dict[str, Any]) -> None:
    checked = 0
    for label, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] not in "45":
                continue
            media = response["content"]["application/json"]
            values = examples_of(media)
            assert values, f"{label} {status}: no example"
            if media["schema"] != ERROR_SCHEMA:  # /health's 503 is a Health, not an error
                continue
            description = response["description"]
            codes = [value["code"] for value in values]
            for value in values:
                assert set(value) == {"code", "message"} and value["message"], (label, value)
                assert value["code"] in description, f"{label} {status}: {value['code']} "
            if "examples" in media:  # one named example per code the status lists
                assert sorted(media["examples"]) == sorted(error_codes(description)), label
                assert sorted(codes) == sorted(error_codes(description)), label
            checked += len(values)
    assert checked > 300


def test_every_json_body_may_be_invalid_json_and_every_operation_internal(
    spec: dict[str, Any],
) -> None:
    """The strict JSON middleware answers 400 ``invalid_json`` on any route taking a
    JSON body, the last-resort guard 500 ``internal`` on any route: both documented."""
    json_bodies = 0
    for label, operation in operations(spec):
        responses = operation["responses"]
        expected = {"500": errors.INTERNAL_CODE}
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            expected["400"] = json_body.CODE
            json_bodies += 1
        for status, code in expected.items():
            assert status in responses, f"{label}: no {status} documented"
            assert code in error_codes(responses[status]["description"]), (label, status)
            media = responses[status]["content"]["application/json"]
            assert media["schema"] == ERROR_SCHEMA, (label, status)
            assert media["examples"][code]["value"]["code"] == code, (label, status)
    assert json_bodies >= 20


def test_documented_error_codes_are_raised_with_that_status(spec: dict[str, Any]) -> None:
    raised = raised_codes()
    for label, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] not in "45" or response["content"]["application/json"]["schema"] != (
                ERROR_SCHEMA
            ):
                continue
            for code in error_codes(response["description"]):
                assert int(status) in raised.get(code, set()), (
                    f"{label} documents {code} as {status}; it is raised as {raised.get(code)}"
                )


def test_examples_conform_to_their_schemas(spec: dict[str, Any]) -> None:
    checked = 0
    for label, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                validator(spec, parameter["schema"]).validate(parameter["example"])
                checked += 1
        body = operation.get("requestBody", {"content": {}})
        responses = [("request", body), *operation["responses"].items()]
        for where, part in responses:
            for media_type, media in part.get("content", {}).items():
                for value in examples_of(media):
                    if media_type != "application/json":
                        assert isinstance(value, str), (label, where)
                        continue
                    try:
                        validator(spec, media["schema"]).validate(value)
                    except jsonschema_rs.ValidationError as exc:
                        pytest.fail(f"{label} {where}: the example does not fit: {exc}")
                    checked += 1
            for header in part.get("headers", {}).values():
                validator(spec, header["schema"]).validate(header["example"])
    assert checked > 400


def test_upload_documents_its_body_and_content_digest(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/listings/{listing_id}/versions/{version}/content"]["put"]
    [digest] = [p for p in operation["parameters"] if p["name"] == "Content-Digest"]
    assert digest["in"] == "header" and digest["required"] is True
    [body] = examples_of(operation["requestBody"]["content"]["application/octet-stream"])
    expected = base64.b64encode(sm3(body.encode("utf-8"))).decode("ascii")
    assert digest["example"] == f"sm3=:{expected}:"


# ---------------------------------------------------------------------- the stored examples


def keys() -> dict[str, SM2PublicKey]:
    return {key_id: SM2PublicKey.from_pem(pem) for key_id, pem in data()["keys"].items()}


def log_key() -> SM2PublicKey:
    return keys()[data()["ids"]["exchange"]]


def test_documentation_keys_are_the_generators() -> None:
    derived = {doc_key(label).public_key().to_pem().decode("ascii") for label in KEY_LABELS}
    assert derived == set(data()["keys"].values())


def test_signed_action_examples_verify_and_parse(spec: dict[str, Any]) -> None:
    public = keys()
    seen = set()
    for label, operation in operations(spec):
        name = name_of(operation)
        if name not in SIGNED_ACTIONS:
            continue
        seen.add(name)
        record_type, model = SIGNED_ACTIONS[name]
        [body] = examples_of(operation["requestBody"]["content"]["application/json"])
        assert body == request_example(name), label
        signed = SignedRecord.from_dict(body["record"])
        assert signed.record.type == record_type, label
        signed.verify(public[signed.record.actor])  # raises if the signature does not hold
        model.model_validate(dict(signed.record.to_dict()["payload"]))
    assert seen == set(SIGNED_ACTIONS)


def test_log_append_examples_verify() -> None:
    bodies = [request_example("post_record"), *request_example("post_records")["records"]]
    for body in bodies:
        signed = SignedRecord.from_dict(body["record"])
        signed.verify(SM2PublicKey.from_pem(body["public_key"]))
    appended = [response_example("post_record"), *response_example("post_records")["appended"]]
    for body, entry in zip(bodies, appended, strict=True):
        assert entry["leaf_hash"] == SignedRecord.from_dict(body["record"]).leaf_hash().hex()


def promises_in(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "batch_proof" in value:
            yield value
        for item in value.values():
            yield from promises_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from promises_in(item)


def test_every_promise_in_the_examples_verifies() -> None:
    promises = list(promises_in(data()["responses"]))
    assert len(promises) > 20
    for body in promises:
        Promise.from_dict(body).verify(log_key())


def test_log_blocks_are_those_of_the_request_records() -> None:
    for name in SIGNED_ACTIONS:
        response = response_example(name)
        signed = SignedRecord.from_dict(request_example(name)["record"])
        assert response["log"]["leaf_hash"] == signed.leaf_hash().hex(), name
        assert response["log"]["promise"]["leaf_hash"] == response["log"]["leaf_hash"], name


def test_quote_example_is_the_exchanges_and_the_orders() -> None:
    issued = response_example("quote_listing")["quote"]
    quote = Quote.from_dict(issued)
    log_key().verify(quote.signature, quote.signed_bytes())
    placed = SignedRecord.from_dict(request_example("place_order")["record"])
    assert placed.record.to_dict()["payload"]["quote"] == issued
    assert quote.terms.rows == request_example("quote_listing")["terms"]["rows"]
    assert response_example("place_order")["order"]["amount"] == quote.amount


def test_proof_and_receipt_examples_verify() -> None:
    latest = Checkpoint.from_dict(response_example("get_latest_checkpoint"))
    early = Checkpoint.from_dict(response_example("get_checkpoint"))
    for checkpoint in (latest, early):
        checkpoint.verify(log_key())
    proof = response_example("get_inclusion_proof")
    assert proof["tree_size"] == latest.tree_size
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["hashes"]],
        latest.root,
    )
    consistency = response_example("get_consistency_proof")
    assert (consistency["first"], consistency["second"]) == (early.tree_size, latest.tree_size)
    verify_consistency(
        early.tree_size,
        latest.tree_size,
        early.root,
        latest.root,
        [bytes.fromhex(h) for h in consistency["hashes"]],
    )
    entry = response_example("get_entry")
    assert SignedRecord.from_dict(entry["record"]).leaf_hash().hex() == entry["leaf_hash"]

    bundle = Bundle.from_dict(response_example("get_receipt"))
    bundle.record.verify(bundle.actor_public_key)
    bundle.promise.verify(bundle.log_public_key)
    bundle.checkpoint.verify(bundle.log_public_key)
    verify_inclusion(
        bundle.record.leaf_hash(),
        bundle.inclusion.index,
        bundle.inclusion.tree_size,
        bundle.inclusion.hashes,
        bundle.checkpoint.root,
    )
    assert bundle.checkpoint == early
    assert bundle.anchor.tx_hash == response_example("get_anchors")[0]["tx_hash"]


def test_examples_file_is_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["exchange"]
    assert "api/examples/*.json" in patterns
