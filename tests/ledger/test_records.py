"""Records: canonical bytes, signatures, strict parsing, tampering."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from typing import Any

import pytest

from ledger.errors import InvalidSignature, VerificationError
from ledger.merkle import leaf_hash
from ledger.records import (
    ActorMismatchError,
    Record,
    RecordFormatError,
    SignedRecord,
    canonical_json,
    sign_record,
)
from ledger.sm2 import SM2PrivateKey

PAYLOAD: dict[str, Any] = {
    "listing_id": "lst_01",
    "title": "重庆市公共交通客流数据（2024）",
    "price_fen": 1999900,
    "tiers": [{"rows": 1000, "price_fen": 100}, {"rows": None, "price_fen": 90}],
    "personal_data": False,
}


@pytest.fixture(scope="module")
def alice() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def bob() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def signed(alice: SM2PrivateKey) -> SignedRecord:
    return sign_record(alice, "listing.published", PAYLOAD, timestamp=1_700_000_000_000)


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


# --------------------------------------------------------------------------- canonical form


def test_sign_and_verify_round_trip(signed: SignedRecord, alice: SM2PrivateKey) -> None:
    signed.verify(alice.public_key())
    assert signed.record.actor == alice.key_id()
    again = SignedRecord.from_dict(json.loads(json.dumps(signed.to_dict())))
    assert again == signed
    again.verify(alice.public_key())
    assert SignedRecord.from_json(signed.to_json()) == signed
    assert Record.from_json(signed.record.to_json()) == signed.record


def test_canonical_bytes_are_rfc8785(signed: SignedRecord) -> None:
    text = signed.record.canonical_bytes().decode("utf-8")
    assert text.startswith('{"actor":"')
    assert '"schema_version":1,"timestamp":1700000000000,"type":"listing.published"}' in text
    assert "重庆市公共交通客流数据（2024）" in text  # UTF-8, not \u escapes
    assert " " not in text.replace("（2024）", "")


def test_canonicalisation_is_key_order_independent(alice: SM2PrivateKey) -> None:
    a = Record("order.placed", 1, alice.key_id(), 5, PAYLOAD)
    b = Record("order.placed", 1, alice.key_id(), 5, _reverse_keys(PAYLOAD))
    assert list(_reverse_keys(PAYLOAD)) != list(PAYLOAD)
    assert a.canonical_bytes() == b.canonical_bytes()
    assert a == b
    reordered = _reverse_keys(a.to_dict())
    assert Record.from_dict(reordered).canonical_bytes() == a.canonical_bytes()


def test_chinese_keys_and_values_canonicalise_identically(alice: SM2PrivateKey) -> None:
    one = {"数据": "山城链", "价格": 100, "备注": {"甲": 1, "乙": [2, "丙"]}}
    two = {"备注": {"乙": [2, "丙"], "甲": 1}, "价格": 100, "数据": "山城链"}
    assert canonical_json(one) == canonical_json(two)
    r1 = sign_record(alice, "order.placed", one, timestamp=1)
    r2 = SignedRecord(Record("order.placed", 1, alice.key_id(), 1, two), r1.signature)
    r2.verify(alice.public_key())
    assert r1.leaf_bytes() == r2.leaf_bytes()


def test_leaf_hash_commits_to_signature(signed: SignedRecord, alice: SM2PrivateKey) -> None:
    assert signed.leaf_hash() == leaf_hash(signed.leaf_bytes())
    assert json.loads(signed.leaf_bytes()) == signed.to_dict()
    resigned = sign_record(
        alice, "listing.published", PAYLOAD, timestamp=signed.record.timestamp
    )  # SM2 is randomised: same record, another signature
    assert resigned.record == signed.record
    assert resigned.leaf_hash() != signed.leaf_hash()


def test_record_is_frozen(signed: SignedRecord) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        signed.record.timestamp = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        signed.record.payload["price_fen"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        signed.record.payload["tiers"].append(1)
    d = signed.record.to_dict()
    d["payload"]["price_fen"] = 1
    assert signed.record.payload["price_fen"] == PAYLOAD["price_fen"]
    assert hash(signed) == hash(copy.deepcopy(signed))


def test_payload_is_copied_at_construction(alice: SM2PrivateKey) -> None:
    payload = copy.deepcopy(PAYLOAD)
    signed = sign_record(alice, "listing.published", payload, timestamp=1)
    payload["price_fen"] = 0
    payload["tiers"].clear()
    signed.verify(alice.public_key())


# --------------------------------------------------------------------------- tampering


def _tampered_records(signed: SignedRecord, other: str) -> dict[str, Record]:
    r = signed.record
    payload = r.to_dict()["payload"]
    return {
        "type": dataclasses.replace(r, type="listing.delisted"),
        "schema_version": dataclasses.replace(r, schema_version=2),
        "actor": dataclasses.replace(r, actor=other),
        "timestamp": dataclasses.replace(r, timestamp=r.timestamp + 1),
        "payload value": dataclasses.replace(r, payload={**payload, "price_fen": 1}),
        "payload key added": dataclasses.replace(r, payload={**payload, "x": None}),
        "payload key removed": dataclasses.replace(
            r, payload={k: v for k, v in payload.items() if k != "personal_data"}
        ),
        "nested value": dataclasses.replace(
            r,
            payload={**payload, "tiers": [{"rows": 1000, "price_fen": 1}, payload["tiers"][1]]},
        ),
        "unicode": dataclasses.replace(r, payload={**payload, "title": "重庆市公共交通客流数据"}),
    }


@pytest.mark.parametrize(
    "field",
    [
        "type",
        "schema_version",
        "timestamp",
        "payload value",
        "payload key added",
        "payload key removed",
        "nested value",
        "unicode",
    ],
)
def test_any_field_changed_after_signing_fails(
    signed: SignedRecord, alice: SM2PrivateKey, bob: SM2PrivateKey, field: str
) -> None:
    tampered = SignedRecord(_tampered_records(signed, bob.key_id())[field], signed.signature)
    with pytest.raises(InvalidSignature):
        tampered.verify(alice.public_key())
    assert tampered.leaf_hash() != signed.leaf_hash()


def test_actor_changed_names_the_mismatch(
    signed: SignedRecord, alice: SM2PrivateKey, bob: SM2PrivateKey
) -> None:
    tampered = SignedRecord(_tampered_records(signed, bob.key_id())["actor"], signed.signature)
    with pytest.raises(ActorMismatchError) as err:
        tampered.verify(alice.public_key())
    assert err.value.expected == bob.key_id()
    assert err.value.actual == alice.key_id()
    with pytest.raises(InvalidSignature):  # bob's key: right actor id, wrong signer
        tampered.verify(bob.public_key())


def test_someone_elses_key_is_refused(signed: SignedRecord, bob: SM2PrivateKey) -> None:
    with pytest.raises(ActorMismatchError) as err:
        signed.verify(bob.public_key())
    assert isinstance(err.value, VerificationError)
    assert bob.key_id() in str(err.value) and signed.record.actor in str(err.value)


def test_signature_of_another_record_fails(signed: SignedRecord, alice: SM2PrivateKey) -> None:
    other = sign_record(alice, "order.placed", {"order_id": "o1"}, timestamp=1)
    with pytest.raises(InvalidSignature):
        SignedRecord(signed.record, other.signature).verify(alice.public_key())


@pytest.mark.parametrize("position", [0, 10, -1])
def test_signature_bit_flip_fails(
    signed: SignedRecord, alice: SM2PrivateKey, position: int
) -> None:
    sig = bytearray(signed.signature)
    sig[position] ^= 0x01
    with pytest.raises(InvalidSignature):
        SignedRecord(signed.record, bytes(sig)).verify(alice.public_key())


# --------------------------------------------------------------------------- format errors


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"price": 1.5}, "payload.price"),
        ({"price": 1.0}, "payload.price"),
        ({"a": [1, {"b": 2.5}]}, "payload.a[1].b"),
        ({"a": float("nan")}, "payload.a"),
        ({"big": 2**53}, "payload.big"),
        ({"small": -(2**53)}, "payload.small"),
        ({"s": {1, 2}}, "payload.s"),
        ({"b": b"bytes"}, "payload.b"),
        ({"bad": "\ud800"}, "payload.bad"),
        ({"nested": {2: "x"}}, "payload.nested"),
    ],
)
def test_bad_payload_values_are_refused_with_their_path(
    alice: SM2PrivateKey, payload: dict[str, Any], path: str
) -> None:
    with pytest.raises(RecordFormatError) as err:
        sign_record(alice, "order.placed", payload)
    assert err.value.path == path
    assert str(err.value).startswith(path + ": ")


def test_float_refused_when_parsing(signed: SignedRecord) -> None:
    data = signed.to_dict()
    data["record"]["payload"]["price_fen"] = 19999.0
    with pytest.raises(RecordFormatError) as err:
        SignedRecord.from_dict(data)
    assert err.value.path == "record.payload.price_fen"
    with pytest.raises(RecordFormatError, match="floats"):
        SignedRecord.from_json(json.dumps(data))


@pytest.mark.parametrize(
    "name", ["", "listing", "Listing.published", "listing.", ".x", "a..b", "a.b-c", "a.1", 7]
)
def test_bad_type_names_are_refused(alice: SM2PrivateKey, name: Any) -> None:
    with pytest.raises(RecordFormatError) as err:
        sign_record(alice, name, {})
    assert err.value.path == "type"


@pytest.mark.parametrize(
    "name", ["listing.published", "order.placed", "settlement.paid", "a.b.c", "x_y.z_w"]
)
def test_good_type_names(alice: SM2PrivateKey, name: str) -> None:
    sign_record(alice, name, {}).verify(alice.public_key())


def _mutations(signed: SignedRecord) -> list[tuple[str, Any, str]]:
    """(description, malformed signed-record dict, expected error path)."""
    base = signed.to_dict()

    def edit(path: list[str], value: Any, *, delete: bool = False) -> dict[str, Any]:
        d = copy.deepcopy(base)
        target = d
        for key in path[:-1]:
            target = target[key]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return d

    return [
        ("not an object", [base], ""),
        ("missing signature", edit(["signature"], None, delete=True), ""),
        ("unknown top field", {**base, "extra": 1}, ""),
        ("record not object", edit(["record"], "x"), "record"),
        ("missing payload", edit(["record", "payload"], None, delete=True), "record"),
        ("unknown record field", edit(["record", "nonce"], 1), "record"),
        ("bool schema version", edit(["record", "schema_version"], True), "record.schema_version"),
        ("zero schema version", edit(["record", "schema_version"], 0), "record.schema_version"),
        ("string timestamp", edit(["record", "timestamp"], "1"), "record.timestamp"),
        ("negative timestamp", edit(["record", "timestamp"], -1), "record.timestamp"),
        ("float timestamp", edit(["record", "timestamp"], 1.0), "record.timestamp"),
        (
            "uppercase actor",
            edit(["record", "actor"], base["record"]["actor"].upper()),
            "record.actor",
        ),
        ("short actor", edit(["record", "actor"], "ab"), "record.actor"),
        ("payload list", edit(["record", "payload"], [1]), "record.payload"),
        ("bad type", edit(["record", "type"], "Order"), "record.type"),
        ("signature not base64", edit(["signature"], "!!!"), "signature"),
        (
            "signature unpadded",
            edit(["signature"], "AA"),
            "signature",
        ),
        ("signature urlsafe", edit(["signature"], "-_-_"), "signature"),
        ("signature empty", edit(["signature"], ""), "signature"),
        ("signature non-canonical", edit(["signature"], "AB=="), "signature"),
        ("signature number", edit(["signature"], 5), "signature"),
    ]


def test_from_dict_is_strict(signed: SignedRecord) -> None:
    for desc, data, path in _mutations(signed):
        with pytest.raises(RecordFormatError) as err:
            SignedRecord.from_dict(data)
        assert err.value.path == path, desc


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"record": {}, "record": {}, "signature": "AA=="}',
        '{"x": NaN}',
        b"\xff\xfe",
    ],
)
def test_from_json_refuses_bad_json(text: str | bytes) -> None:
    with pytest.raises(RecordFormatError):
        SignedRecord.from_json(text)


def test_deep_nesting_is_refused(alice: SM2PrivateKey) -> None:
    deep: Any = 1
    for _ in range(70):
        deep = {"a": deep}
    with pytest.raises(RecordFormatError, match="nested deeper"):
        sign_record(alice, "order.placed", deep)
    with pytest.raises(RecordFormatError, match="nested deeper"):  # refused before parsing
        SignedRecord.from_json("[" * 100_000 + "]" * 100_000)
    # brackets inside strings do not count
    text = json.dumps({"record": {"type": "[" * 500}, "signature": "{" * 500})
    with pytest.raises(RecordFormatError) as err:
        SignedRecord.from_json(text)
    assert "nested" not in str(err.value)


def test_default_timestamp_is_now(alice: SM2PrivateKey) -> None:
    before = time.time_ns() // 1_000_000
    signed = sign_record(alice, "order.placed", {})
    assert before <= signed.record.timestamp <= time.time_ns() // 1_000_000


def test_signature_must_be_bytes(signed: SignedRecord) -> None:
    with pytest.raises(RecordFormatError):
        SignedRecord(signed.record, "sig")  # type: ignore[arg-type]
    with pytest.raises(RecordFormatError):
        SignedRecord(signed.record, b"")
