"""Promises (signed per append batch) and checkpoints: signing, domain separation,
strict parsing, tampering."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    CHECKPOINT_KIND,
    PROMISE_BATCH_KIND,
    Checkpoint,
    KeyMismatchError,
    Promise,
    PromiseBatch,
    PromiseProofError,
    sign_checkpoint,
    sign_promise,
    sign_promise_batch,
    sign_promises,
)
from ledger.errors import InvalidSignature, VerificationError
from ledger.merkle import inclusion_proof, root_from_leaf_hashes
from ledger.records import RecordFormatError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

LEAF = sm3(b"leaf")
ROOT = sm3(b"root")
BATCH = [sm3(b"batch leaf %d" % i) for i in range(7)]
FIRST = 38  # BATCH[3] is entry 41
_KEY = SM2PrivateKey.generate()  # for hypothesis (no function-scoped fixtures there)


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def signed_batch(log_key: SM2PrivateKey) -> tuple[PromiseBatch, list[Promise]]:
    return sign_promise_batch(log_key, FIRST, BATCH, 1_700_000_000_123)


@pytest.fixture(scope="module")
def promises(signed_batch: tuple[PromiseBatch, list[Promise]]) -> list[Promise]:
    return signed_batch[1]


@pytest.fixture(scope="module")
def promise(promises: list[Promise]) -> Promise:
    """Entry 41: position 3 of a batch of 7 starting at 38."""
    return promises[3]


@pytest.fixture(scope="module")
def checkpoint(log_key: SM2PrivateKey) -> Checkpoint:
    return sign_checkpoint(log_key, 42, ROOT, 1_700_000_000_456)


def test_promise_round_trip(promise: Promise, log_key: SM2PrivateKey) -> None:
    promise.verify(log_key.public_key())
    assert promise.log_key_id == log_key.key_id()
    assert promise.index == 41
    assert promise.to_dict()["leaf_hash"] == BATCH[3].hex()
    again = Promise.from_dict(json.loads(json.dumps(promise.to_dict())))
    assert again == promise
    again.verify(log_key.public_key())
    assert Promise.from_json(promise.to_json()) == promise
    assert set(promise.to_dict()) == {
        "leaf_hash",
        "index",
        "timestamp",
        "log_key_id",
        "batch_first_index",
        "batch_size",
        "batch_proof",
        "signature",
    }


def test_one_signature_covers_the_whole_batch(
    signed_batch: tuple[PromiseBatch, list[Promise]], log_key: SM2PrivateKey
) -> None:
    batch, promises = signed_batch
    batch.verify(log_key.public_key())
    assert (batch.first_index, batch.size) == (FIRST, len(BATCH))
    assert batch.batch_root == root_from_leaf_hashes(BATCH)
    assert [p.index for p in promises] == list(range(FIRST, FIRST + len(BATCH)))
    for position, p in enumerate(promises):
        assert p.leaf_hash == BATCH[position]
        assert p.signature == batch.signature
        assert (p.batch_first_index, p.batch_size, p.timestamp) == (FIRST, 7, batch.timestamp)
        assert list(p.batch_proof) == inclusion_proof(position, BATCH)
        assert p.batch_root() == batch.batch_root
        assert p.statement() == batch
        assert dataclasses.replace(p) == p  # a checked copy: the signer made it well formed
        assert isinstance(p.batch_proof, tuple)
        p.verify(log_key.public_key())
    assert sign_promises(log_key, FIRST, BATCH, batch.timestamp)[3].batch_proof == (
        promises[3].batch_proof
    )


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 40), first=st.integers(0, 2**40), data=st.data())
def test_every_promise_of_any_batch_verifies(size: int, first: int, data: st.DataObject) -> None:
    key = _KEY
    leaves = [sm3(b"%d/%d" % (size, i)) for i in range(size)]
    _, promises = sign_promise_batch(key, first, leaves, 7)
    position = data.draw(st.integers(0, size - 1))
    promises[position].verify(key.public_key())
    assert promises[position].index == first + position


def test_a_one_record_batch_has_an_empty_proof(log_key: SM2PrivateKey) -> None:
    single = sign_promise(log_key, LEAF, 41, 1_700_000_000_123)
    assert single.batch_proof == ()
    assert (single.batch_first_index, single.batch_size) == (41, 1)
    assert single.batch_root() == LEAF
    single.verify(log_key.public_key())
    assert json.loads(single.signed_bytes())["batch_root"] == LEAF.hex()


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
        "kind": PROMISE_BATCH_KIND,
        "first_index": FIRST,
        "size": len(BATCH),
        "batch_root": root_from_leaf_hashes(BATCH).hex(),
        "timestamp": 1_700_000_000_123,
        "log_key_id": promise.log_key_id,
    }
    assert json.loads(checkpoint.signed_bytes())["kind"] == CHECKPOINT_KIND


def test_a_promise_signature_is_not_a_checkpoint_signature(log_key: SM2PrivateKey) -> None:
    # Same numbers in both: first index/tree size, batch root/root, timestamp.
    p = sign_promise(log_key, ROOT, 7, 9)
    forged = Checkpoint(7, ROOT, 9, p.log_key_id, p.signature)
    with pytest.raises(InvalidSignature):
        forged.verify(log_key.public_key())
    c = sign_checkpoint(log_key, 7, ROOT, 9)
    with pytest.raises(InvalidSignature):
        dataclasses.replace(p, signature=c.signature).verify(log_key.public_key())


def _flip(data: bytes, position: int = 0) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


PROMISE_TAMPERING: list[tuple[str, Any]] = [
    ("leaf hash", lambda p: {"leaf_hash": sm3(b"other")}),
    ("leaf hash of a batch neighbour", lambda p: {"leaf_hash": BATCH[4]}),
    ("index - 1", lambda p: {"index": p.index - 1}),
    ("index + 1", lambda p: {"index": p.index + 1}),
    ("index outside the batch", lambda p: {"index": FIRST + len(BATCH)}),
    (
        "index and first index shifted together",
        lambda p: {"index": p.index + 1, "batch_first_index": p.batch_first_index + 1},
    ),
    ("timestamp", lambda p: {"timestamp": p.timestamp + 1}),
    ("batch first index", lambda p: {"batch_first_index": p.batch_first_index - 1}),
    ("batch size + 1 (same proof shape)", lambda p: {"batch_size": p.batch_size + 1}),
    ("batch size - 1", lambda p: {"batch_size": p.batch_size - 1}),
    ("batch size 1", lambda p: {"batch_size": 1}),
    (
        "proof node flipped",
        lambda p: {"batch_proof": (_flip(p.batch_proof[0]), *p.batch_proof[1:])},
    ),
    (
        "last proof node flipped",
        lambda p: {"batch_proof": (*p.batch_proof[:-1], _flip(p.batch_proof[-1], 31))},
    ),
    ("proof node dropped", lambda p: {"batch_proof": p.batch_proof[:-1]}),
    ("proof node added", lambda p: {"batch_proof": (*p.batch_proof, p.batch_proof[0])}),
    ("proof emptied", lambda p: {"batch_proof": ()}),
    ("proof reordered", lambda p: {"batch_proof": p.batch_proof[::-1]}),
    ("signature flipped", lambda p: {"signature": _flip(p.signature, -1)}),
]


@pytest.mark.parametrize("change", [pytest.param(c, id=d) for d, c in PROMISE_TAMPERING])
def test_tampered_promise_fails(promise: Promise, log_key: SM2PrivateKey, change: Any) -> None:
    tampered = dataclasses.replace(promise, **change(promise))
    assert tampered != promise
    with pytest.raises(InvalidSignature):
        tampered.verify(log_key.public_key())


def test_a_misshapen_proof_names_the_mismatch(promise: Promise, log_key: SM2PrivateKey) -> None:
    with pytest.raises(PromiseProofError) as err:
        dataclasses.replace(promise, batch_proof=promise.batch_proof[:-1]).verify(
            log_key.public_key()
        )
    assert (err.value.expected, err.value.actual) == (3, 2)
    with pytest.raises(PromiseProofError) as err:
        dataclasses.replace(promise, index=FIRST - 1).verify(log_key.public_key())
    assert err.value.actual == FIRST - 1
    assert f"[{FIRST}, {FIRST + len(BATCH) - 1}]" in str(err.value.expected)


def test_a_promise_lifted_onto_another_leaf_fails(
    promises: list[Promise], log_key: SM2PrivateKey
) -> None:
    """Batch A's promise (signature, batch fields, proof) carried over to a leaf of
    batch B, or B's batch fields pasted under A's signature: nothing verifies."""
    other_leaves = [sm3(b"other batch %d" % i) for i in range(5)]
    _, others = sign_promise_batch(log_key, FIRST + len(BATCH), other_leaves, 1_700_000_000_999)
    a, b = promises[2], others[2]
    lifted = [
        dataclasses.replace(a, leaf_hash=b.leaf_hash),
        dataclasses.replace(a, leaf_hash=b.leaf_hash, index=b.index),
        dataclasses.replace(b, signature=a.signature),
        dataclasses.replace(
            a,
            leaf_hash=b.leaf_hash,
            index=b.index,
            batch_first_index=b.batch_first_index,
            batch_size=b.batch_size,
            batch_proof=b.batch_proof,
        ),
        dataclasses.replace(a, batch_proof=b.batch_proof),
    ]
    for forged in lifted:
        with pytest.raises(InvalidSignature):
            forged.verify(log_key.public_key())
    # Another position of the same batch, with that position's leaf but this proof.
    with pytest.raises(InvalidSignature):
        dataclasses.replace(promises[1], leaf_hash=promises[2].leaf_hash, index=a.index).verify(
            log_key.public_key()
        )


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
    promise: Promise,
    checkpoint: Checkpoint,
    signed_batch: tuple[PromiseBatch, list[Promise]],
    other_key: SM2PrivateKey,
    log_key: SM2PrivateKey,
) -> None:
    for statement in (promise, checkpoint, signed_batch[0]):
        with pytest.raises(KeyMismatchError) as err:
            statement.verify(other_key.public_key())
        assert isinstance(err.value, VerificationError)
        assert err.value.expected == log_key.key_id()
        assert err.value.actual == other_key.key_id()


def test_key_id_relabelled_to_another_key_fails(
    checkpoint: Checkpoint, promise: Promise, other_key: SM2PrivateKey
) -> None:
    for statement in (checkpoint, promise):
        relabelled = dataclasses.replace(statement, log_key_id=other_key.key_id())
        with pytest.raises(InvalidSignature):
            relabelled.verify(other_key.public_key())


def test_a_promise_re_signed_by_another_key_verifies_only_under_it(
    promise: Promise, log_key: SM2PrivateKey, other_key: SM2PrivateKey
) -> None:
    [resigned] = [
        p
        for p in sign_promises(other_key, FIRST, BATCH, promise.timestamp)
        if p.index == promise.index
    ]
    resigned.verify(other_key.public_key())
    with pytest.raises(KeyMismatchError):
        resigned.verify(log_key.public_key())


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
    ("field", "value", "path"),
    [
        ("index", False, "index"),
        ("index", -3, "index"),
        ("leaf_hash", "00", "leaf_hash"),
        ("log_key_id", None, "log_key_id"),
        ("timestamp", None, "timestamp"),
        ("batch_first_index", -1, "batch_first_index"),
        ("batch_first_index", "0", "batch_first_index"),
        ("batch_size", 0, "batch_size"),
        ("batch_size", 2.0, "batch_size"),
        ("batch_proof", "ab" * 32, "batch_proof"),
        ("batch_proof", None, "batch_proof"),
        ("batch_proof", ["ab" * 32] * 65, "batch_proof"),
        ("batch_proof", ["AB" * 32], "batch_proof[0]"),
        ("batch_proof", ["ab" * 32, "ab" * 31], "batch_proof[1]"),
        ("batch_proof", [5], "batch_proof[0]"),
        ("signature", "", "signature"),
    ],
)
def test_promise_from_dict_is_strict(promise: Promise, field: str, value: Any, path: str) -> None:
    with pytest.raises(RecordFormatError) as err:
        Promise.from_dict({**promise.to_dict(), field: value}, path="promise")
    assert err.value.path == f"promise.{path}"


def test_a_misshapen_proof_parses_and_fails_verification(
    promise: Promise, log_key: SM2PrivateKey
) -> None:
    """The proof's length is checked against its position by ``verify`` (a
    tampered promise is a verification failure, not a format error)."""
    data = {**promise.to_dict(), "batch_proof": promise.to_dict()["batch_proof"][:1]}
    parsed = Promise.from_dict(data)
    with pytest.raises(PromiseProofError):
        parsed.verify(log_key.public_key())


def test_missing_and_unknown_fields(checkpoint: Checkpoint, promise: Promise) -> None:
    data = checkpoint.to_dict()
    del data["root"]
    with pytest.raises(RecordFormatError, match="missing field"):
        Checkpoint.from_dict(data)
    with pytest.raises(RecordFormatError, match="unknown field"):
        Checkpoint.from_dict({**checkpoint.to_dict(), "kind": CHECKPOINT_KIND})
    with pytest.raises(RecordFormatError, match="unknown field"):
        Promise.from_dict({**promise.to_dict(), "tree_size": 1})
    with pytest.raises(RecordFormatError, match="missing field"):
        Promise.from_dict({k: v for k, v in promise.to_dict().items() if k != "batch_proof"})
    with pytest.raises(RecordFormatError):
        Promise.from_json("[1]")


def test_constructors_validate(log_key: SM2PrivateKey, promise: Promise) -> None:
    with pytest.raises(RecordFormatError):
        sign_checkpoint(log_key, 1, b"short", 1)
    with pytest.raises(RecordFormatError):
        sign_promise(log_key, LEAF, -1, 1)
    with pytest.raises(RecordFormatError):
        sign_promises(log_key, 0, [], 1)
    with pytest.raises(RecordFormatError):
        sign_promises(log_key, 0, [LEAF, b"short"], 1)
    with pytest.raises(RecordFormatError):
        sign_promises(log_key, 2**53 - 1, [LEAF, ROOT], 1)  # the last index overflows
    with pytest.raises(RecordFormatError):
        Checkpoint(1, ROOT, 1, "x", b"sig")
    with pytest.raises(RecordFormatError):
        dataclasses.replace(promise, batch_size=0)
    with pytest.raises(RecordFormatError):
        dataclasses.replace(promise, batch_proof=(b"short",))
    with pytest.raises(RecordFormatError):
        dataclasses.replace(promise, batch_proof=(LEAF,) * 65)
    with pytest.raises(RecordFormatError):
        PromiseBatch(0, 0, ROOT, 1, log_key.key_id(), b"sig")
