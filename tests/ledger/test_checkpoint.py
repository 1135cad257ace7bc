"""Promises and checkpoints: signing, domain separation, strict parsing, tampering."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from ledger.checkpoint import (
    CHECKPOINT_KIND,
    PROMISE_KIND,
    Checkpoint,
    KeyMismatchError,
    Promise,
    sign_checkpoint,
    sign_promise,
)
from ledger.errors import InvalidSignature, VerificationError
from ledger.records import RecordFormatError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

LEAF = sm3(b"leaf")
ROOT = sm3(b"root")


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def promise(log_key: SM2PrivateKey) -> Promise:
    return sign_promise(log_key, LEAF, 41, 1_700_000_000_123)


@pytest.fixture(scope="module")
def checkpoint(log_key: SM2PrivateKey) -> Checkpoint:
    return sign_checkpoint(log_key, 42, ROOT, 1_700_000_000_456)


def test_promise_round_trip(promise: Promise, log_key: SM2PrivateKey) -> None:
    promise.verify(log_key.public_key())
    assert promise.log_key_id == log_key.key_id()
    assert promise.to_dict()["leaf_hash"] == LEAF.hex()
    again = Promise.from_dict(json.loads(json.dumps(promise.to_dict())))
    assert again == promise
    again.verify(log_key.public_key())
    assert Promise.from_json(promise.to_json()) == promise


def test_checkpoint_round_trip(checkpoint: Checkpoint, log_key: SM2PrivateKey) -> None:
    checkpoint.verify(log_key.public_key())
    assert checkpoint.to_dict()["root"] == ROOT.hex()
    assert checkpoint.to_dict()["tree_size"] == 42
    again = Checkpoint.from_dict(json.loads(json.dumps(checkpoint.to_dict())))
    assert again == checkpoint
    again.verify(log_key.public_key())
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint


def test_signed_bytes_carry_a_kind(promise: Promise, checkpoint: Checkpoint) -> None:
    assert json.loads(promise.signed_bytes()) == {
        "kind": PROMISE_KIND,
        "leaf_hash": LEAF.hex(),
        "index": 41,
        "timestamp": 1_700_000_000_123,
        "log_key_id": promise.log_key_id,
    }
    assert json.loads(checkpoint.signed_bytes())["kind"] == CHECKPOINT_KIND


def test_a_promise_signature_is_not_a_checkpoint_signature(log_key: SM2PrivateKey) -> None:
    # Same numbers in both: index/tree_size, hash/root, timestamp.
    p = sign_promise(log_key, ROOT, 7, 9)
    forged = Checkpoint(7, ROOT, 9, p.log_key_id, p.signature)
    with pytest.raises(InvalidSignature):
        forged.verify(log_key.public_key())


@pytest.mark.parametrize(
    "change",
    [
        {"leaf_hash": sm3(b"other")},
        {"index": 40},
        {"index": 42},
        {"timestamp": 1_700_000_000_124},
    ],
    ids=lambda c: next(iter(c)),
)
def test_tampered_promise_fails(
    promise: Promise, log_key: SM2PrivateKey, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSignature):
        dataclasses.replace(promise, **change).verify(log_key.public_key())


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 43},
        {"tree_size": 0},
        {"root": sm3(b"other")},
        {"timestamp": 1},
    ],
    ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))!r}"[:30],
)
def test_tampered_checkpoint_fails(
    checkpoint: Checkpoint, log_key: SM2PrivateKey, change: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSignature):
        dataclasses.replace(checkpoint, **change).verify(log_key.public_key())


def test_signature_flip_fails(checkpoint: Checkpoint, log_key: SM2PrivateKey) -> None:
    sig = bytearray(checkpoint.signature)
    sig[-1] ^= 0x80
    with pytest.raises(InvalidSignature):
        dataclasses.replace(checkpoint, signature=bytes(sig)).verify(log_key.public_key())


def test_another_key_is_a_key_mismatch(
    promise: Promise, checkpoint: Checkpoint, other_key: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    for statement in (promise, checkpoint):
        with pytest.raises(KeyMismatchError) as err:
            statement.verify(other_key.public_key())
        assert isinstance(err.value, VerificationError)
        assert err.value.expected == log_key.key_id()
        assert err.value.actual == other_key.key_id()


def test_key_id_relabelled_to_another_key_fails(
    checkpoint: Checkpoint, other_key: SM2PrivateKey
) -> None:
    relabelled = dataclasses.replace(checkpoint, log_key_id=other_key.key_id())
    with pytest.raises(InvalidSignature):
        relabelled.verify(other_key.public_key())


def test_resigned_checkpoint_verifies_only_under_its_own_key(
    checkpoint: Checkpoint, log_key: SM2PrivateKey, other_key: SM2PrivateKey
) -> None:
    resigned = sign_checkpoint(other_key, checkpoint.tree_size, ROOT, checkpoint.timestamp)
    resigned.verify(other_key.public_key())
    with pytest.raises(KeyMismatchError):
        resigned.verify(log_key.public_key())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tree_size", -1),
        ("tree_size", True),
        ("tree_size", "3"),
        ("tree_size", 2**53),
        ("root", "00" * 31),
        ("root", "AB" * 32),
        ("root", "zz" * 32),
        ("root", 5),
        ("timestamp", 1.5),
        ("log_key_id", "ab"),
        ("signature", "not base64!"),
        ("signature", ""),
    ],
)
def test_checkpoint_from_dict_is_strict(checkpoint: Checkpoint, field: str, value: Any) -> None:
    data = {**checkpoint.to_dict(), field: value}
    with pytest.raises(RecordFormatError) as err:
        Checkpoint.from_dict(data)
    assert err.value.path == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("index", False),
        ("index", -3),
        ("leaf_hash", "00"),
        ("log_key_id", None),
        ("timestamp", None),
    ],
)
def test_promise_from_dict_is_strict(promise: Promise, field: str, value: Any) -> None:
    with pytest.raises(RecordFormatError) as err:
        Promise.from_dict({**promise.to_dict(), field: value}, path="promise")
    assert err.value.path == f"promise.{field}"


def test_missing_and_unknown_fields(checkpoint: Checkpoint, promise: Promise) -> None:
    data = checkpoint.to_dict()
    del data["root"]
    with pytest.raises(RecordFormatError, match="missing field"):
        Checkpoint.from_dict(data)
    with pytest.raises(RecordFormatError, match="unknown field"):
        Checkpoint.from_dict({**checkpoint.to_dict(), "kind": CHECKPOINT_KIND})
    with pytest.raises(RecordFormatError, match="unknown field"):
        Promise.from_dict({**promise.to_dict(), "tree_size": 1})
    with pytest.raises(RecordFormatError):
        Promise.from_json("[1]")


def test_constructors_validate(log_key: SM2PrivateKey) -> None:
    with pytest.raises(RecordFormatError):
        sign_checkpoint(log_key, 1, b"short", 1)
    with pytest.raises(RecordFormatError):
        sign_promise(log_key, LEAF, -1, 1)
    with pytest.raises(RecordFormatError):
        Checkpoint(1, ROOT, 1, "x", b"sig")
