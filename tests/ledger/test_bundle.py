"""Bundle v1: strict parsing, and the audit pipeline against every kind of tampering.

Valid bundles are built here from ledger pieces only (records signed by their
actors, an InMemoryTree, the log's promise and checkpoint), and the chain is
an in-memory fake AnchorSource.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.audit import (
    STEPS,
    AnchorLookupError,
    AuditError,
    AuditInconclusiveError,
    OnChainAnchor,
    StepStatus,
    WrongChainError,
    verify_bundle,
)
from ledger.bundle import (
    AnchorRef,
    Bundle,
    BundleFormatError,
    InclusionProof,
    UnsupportedBundleVersionError,
)
from ledger.checkpoint import Promise, sign_checkpoint, sign_promise, sign_promises
from ledger.errors import VerificationError
from ledger.merkle import InMemoryTree
from ledger.records import RecordFormatError, SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
TX_HASH = "0x" + "ab" * 32
N_RECORDS = 7


@dataclasses.dataclass
class FakeAnchors:
    """An in-memory registry: {(chain_id, registry lowercase, tree_size): OnChainAnchor}."""

    anchors: dict[tuple[int, str, int], OnChainAnchor]
    chain_id: int = CHAIN_ID
    fail: bool = False

    def anchored_root(
        self, chain_id: int, registry_address: str, tree_size: int
    ) -> OnChainAnchor | None:
        if self.fail:
            raise AnchorLookupError("chain unreachable")
        if chain_id != self.chain_id:
            raise WrongChainError(chain_id, self.chain_id)
        return self.anchors.get((chain_id, registry_address.lower(), tree_size))


BATCHES = [(0, 1), (1, 3), (4, 3)]
"""How the records were appended: (first index, size) of each promise batch."""


@dataclasses.dataclass
class Log:
    log_key: SM2PrivateKey
    actors: list[SM2PrivateKey]
    records: list[SignedRecord]
    tree: InMemoryTree

    def promises(self, key: SM2PrivateKey | None = None) -> list[Promise]:
        """Every record's promise, signed per batch by ``key`` (default: the log key)."""
        out: list[Promise] = []
        for first, size in BATCHES:
            leaves = [r.leaf_hash() for r in self.records[first : first + size]]
            out += sign_promises(key or self.log_key, first, leaves, 1_700_000_000_000 + first)
        return out

    def bundle(self, index: int, tree_size: int | None = None) -> Bundle:
        size = self.tree.size if tree_size is None else tree_size
        record = self.records[index]
        promise = self.promises()[index]
        checkpoint = sign_checkpoint(self.log_key, size, self.tree.root(size), 1_700_000_100_000)
        return Bundle(
            record=record,
            actor_public_key=self.actors[index % len(self.actors)].public_key(),
            promise=promise,
            log_public_key=self.log_key.public_key(),
            inclusion=InclusionProof(index, size, tuple(self.tree.inclusion_proof(index, size))),
            checkpoint=checkpoint,
            anchor=AnchorRef(CHAIN_ID, REGISTRY, TX_HASH, 12),
        )

    def anchors(self, *sizes: int, confirmations: int = 3) -> FakeAnchors:
        return FakeAnchors(
            {
                (CHAIN_ID, REGISTRY.lower(), n): OnChainAnchor(
                    self.tree.root(n), 12, TX_HASH, confirmations
                )
                for n in sizes or (self.tree.size,)
            }
        )


@pytest.fixture(scope="module")
def log() -> Log:
    log_key = SM2PrivateKey.generate()
    actors = [SM2PrivateKey.generate() for _ in range(3)]
    records = [
        sign_record(
            actors[i % 3],
            "order.placed",
            {"order_id": f"订单-{i}", "amount_fen": 100 * i, "lines": [{"sku": "x", "qty": i}]},
            timestamp=1_700_000_000_000 + i,
        )
        for i in range(N_RECORDS)
    ]
    return Log(log_key, actors, records, InMemoryTree(r.leaf_hash() for r in records))


@pytest.fixture(scope="module")
def bundle(log: Log) -> Bundle:
    return log.bundle(4)


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("index", range(N_RECORDS))
def test_every_entry_verifies_online(log: Log, index: int) -> None:
    report = verify_bundle(log.bundle(index), anchors=log.anchors())
    assert report.ok
    assert [s.name for s in report.steps] == list(STEPS)
    assert {s.status for s in report.steps} == {StepStatus.PASSED}


def test_bundle_for_an_earlier_tree_size(log: Log) -> None:
    report = verify_bundle(
        log.bundle(2, tree_size=3), anchors=log.anchors(3), trusted_log_key=log.log_key.public_key()
    )
    assert report.ok
    assert report.subject["tree_size"] == 3


def test_offline_skips_only_the_chain(bundle: Bundle) -> None:
    report = verify_bundle(bundle, anchors=None)
    assert report.ok
    assert [s.status for s in report.steps] == [StepStatus.PASSED] * 4 + [StepStatus.SKIPPED]
    assert report.failed_step is None


def test_json_round_trip(bundle: Bundle, log: Log) -> None:
    text = bundle.to_json()
    again = Bundle.from_json(text)
    assert again == bundle
    assert Bundle.from_json(bundle.to_json(indent=2)) == bundle
    assert json.loads(text)["version"] == 1
    verify_bundle(again, anchors=log.anchors())


def test_report_to_dict(bundle: Bundle, log: Log) -> None:
    out = verify_bundle(bundle, anchors=log.anchors()).to_dict()
    assert out["ok"] is True
    assert out["subject"]["index"] == 4
    assert [s["status"] for s in out["steps"]] == ["passed"] * 5
    json.dumps(out)


def test_anchor_tx_hash_difference_is_reported_not_failed(bundle: Bundle, log: Log) -> None:
    anchors = log.anchors()
    key = (CHAIN_ID, REGISTRY.lower(), log.tree.size)
    anchors.anchors[key] = dataclasses.replace(anchors.anchors[key], tx_hash="0x" + "cd" * 32)
    report = verify_bundle(bundle, anchors=anchors)  # e.g. re-anchored after a reorg
    assert "the bundle names" in report.steps[-1].detail


# --------------------------------------------------------------------------- tampering


def _flip(data: bytes, position: int = 0) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _replace_record(b: Bundle, **record_changes: Any) -> Bundle:
    record = dataclasses.replace(b.record.record, **record_changes)
    return dataclasses.replace(b, record=SignedRecord(record, b.record.signature))


def _resign_all_with(key: SM2PrivateKey) -> Callable[[Bundle, Log], Bundle]:
    def mutate(b: Bundle, log: Log) -> Bundle:
        c, p = b.checkpoint, b.promise
        return dataclasses.replace(
            b,
            log_public_key=key.public_key(),
            promise=log.promises(key)[p.index],
            checkpoint=sign_checkpoint(key, c.tree_size, c.root, c.timestamp),
        )

    return mutate


def _replace_promise(b: Bundle, **changes: Any) -> Bundle:
    return dataclasses.replace(b, promise=dataclasses.replace(b.promise, **changes))


MALLORY = SM2PrivateKey.generate()

Mutation = Callable[[Bundle, Log], Bundle]

TAMPER_CASES: list[tuple[str, Mutation, str]] = [
    # actor_signature
    (
        "payload edited",
        lambda b, _: _replace_record(b, payload={**b.record.record.to_dict()["payload"], "x": 1}),
        "actor_signature",
    ),
    (
        "record type edited",
        lambda b, _: _replace_record(b, type="order.cancelled"),
        "actor_signature",
    ),
    (
        "record timestamp edited",
        lambda b, _: _replace_record(b, timestamp=b.record.record.timestamp + 1),
        "actor_signature",
    ),
    (
        "signature swapped with another valid record's",
        lambda b, log: dataclasses.replace(
            b, record=SignedRecord(b.record.record, log.records[1].signature)
        ),
        "actor_signature",
    ),
    (
        "signature bit flip",
        lambda b, _: dataclasses.replace(
            b, record=SignedRecord(b.record.record, _flip(b.record.signature, 12))
        ),
        "actor_signature",
    ),
    (
        "actor public key of someone else",
        lambda b, log: dataclasses.replace(b, actor_public_key=log.actors[0].public_key()),
        "actor_signature",
    ),
    (
        "record and key of an impostor",
        lambda b, _: dataclasses.replace(
            b,
            record=SignedRecord(
                b.record.record,
                MALLORY.sign(b.record.record.canonical_bytes()),
            ),
            actor_public_key=MALLORY.public_key(),
        ),
        "actor_signature",
    ),
    # leaf_hash
    (
        "whole record replaced by another signed record",
        lambda b, log: dataclasses.replace(
            b, record=log.records[5], actor_public_key=log.actors[5 % 3].public_key()
        ),
        "leaf_hash",
    ),
    (
        "promise leaf hash edited",
        lambda b, _: dataclasses.replace(
            b, promise=dataclasses.replace(b.promise, leaf_hash=_flip(b.promise.leaf_hash))
        ),
        "leaf_hash",
    ),
    (
        "promise index edited",
        lambda b, _: dataclasses.replace(b, promise=dataclasses.replace(b.promise, index=3)),
        "leaf_hash",
    ),
    (
        "promise timestamp edited",
        lambda b, _: dataclasses.replace(b, promise=dataclasses.replace(b.promise, timestamp=1)),
        "leaf_hash",
    ),
    (
        "promise signature flipped",
        lambda b, _: dataclasses.replace(
            b, promise=dataclasses.replace(b.promise, signature=_flip(b.promise.signature, -1))
        ),
        "leaf_hash",
    ),
    (
        "promise signed by another key",
        lambda b, _: dataclasses.replace(
            b,
            promise=sign_promise(
                MALLORY, b.promise.leaf_hash, b.promise.index, b.promise.timestamp
            ),
        ),
        "leaf_hash",
    ),
    (
        "promise batch proof node flipped",
        lambda b, _: _replace_promise(
            b, batch_proof=(_flip(b.promise.batch_proof[0]), *b.promise.batch_proof[1:])
        ),
        "leaf_hash",
    ),
    (
        "promise batch proof node dropped",
        lambda b, _: _replace_promise(b, batch_proof=b.promise.batch_proof[:-1]),
        "leaf_hash",
    ),
    (
        "promise batch proof node added",
        lambda b, _: _replace_promise(
            b, batch_proof=(*b.promise.batch_proof, b.promise.batch_proof[0])
        ),
        "leaf_hash",
    ),
    (
        "promise batch first index edited",
        lambda b, _: _replace_promise(b, batch_first_index=b.promise.batch_first_index - 1),
        "leaf_hash",
    ),
    (
        "promise batch size edited",
        lambda b, _: _replace_promise(b, batch_size=b.promise.batch_size + 1),
        "leaf_hash",
    ),
    (
        "promise of another batch, relabelled for this leaf",
        lambda b, log: _replace_promise(
            dataclasses.replace(b, promise=log.promises()[2]),
            leaf_hash=b.promise.leaf_hash,
            index=b.promise.index,
        ),
        "leaf_hash",
    ),
    (
        "promise of a batch neighbour, relabelled for this leaf",
        lambda b, log: _replace_promise(
            dataclasses.replace(b, promise=log.promises()[b.promise.index + 1]),
            leaf_hash=b.promise.leaf_hash,
            index=b.promise.index,
        ),
        "leaf_hash",
    ),
    (
        "inclusion index differs from the promise",
        lambda b, _: dataclasses.replace(
            b, inclusion=dataclasses.replace(b.inclusion, index=b.inclusion.index + 1)
        ),
        "leaf_hash",
    ),
    # inclusion
    (
        "proof node bit flip",
        lambda b, _: dataclasses.replace(
            b,
            inclusion=dataclasses.replace(
                b.inclusion, hashes=(_flip(b.inclusion.hashes[0]), *b.inclusion.hashes[1:])
            ),
        ),
        "inclusion",
    ),
    (
        "proof truncated",
        lambda b, _: dataclasses.replace(
            b, inclusion=dataclasses.replace(b.inclusion, hashes=b.inclusion.hashes[:-1])
        ),
        "inclusion",
    ),
    (
        "proof extended",
        lambda b, _: dataclasses.replace(
            b,
            inclusion=dataclasses.replace(
                b.inclusion, hashes=(*b.inclusion.hashes, b.inclusion.hashes[0])
            ),
        ),
        "inclusion",
    ),
    (
        "proof nodes reordered",
        lambda b, _: dataclasses.replace(
            b, inclusion=dataclasses.replace(b.inclusion, hashes=b.inclusion.hashes[::-1])
        ),
        "inclusion",
    ),
    (
        "inclusion tree size changed",
        lambda b, _: dataclasses.replace(
            b, inclusion=dataclasses.replace(b.inclusion, tree_size=b.inclusion.tree_size - 1)
        ),
        "inclusion",
    ),
    (
        "checkpoint tree size changed (and the proof's)",
        lambda b, _: dataclasses.replace(
            b,
            inclusion=dataclasses.replace(b.inclusion, tree_size=5),
            checkpoint=dataclasses.replace(b.checkpoint, tree_size=5),
        ),
        "inclusion",
    ),
    (
        "checkpoint root changed",
        lambda b, _: dataclasses.replace(
            b, checkpoint=dataclasses.replace(b.checkpoint, root=_flip(b.checkpoint.root, 31))
        ),
        "inclusion",
    ),
    (
        "proof for another leaf",
        lambda b, log: dataclasses.replace(
            b,
            inclusion=dataclasses.replace(
                b.inclusion, hashes=tuple(log.tree.inclusion_proof(5, b.inclusion.tree_size))
            ),
        ),
        "inclusion",
    ),
    # checkpoint_signature
    (
        "checkpoint timestamp edited",
        lambda b, _: dataclasses.replace(
            b, checkpoint=dataclasses.replace(b.checkpoint, timestamp=b.checkpoint.timestamp + 1)
        ),
        "checkpoint_signature",
    ),
    (
        "checkpoint signature flipped",
        lambda b, _: dataclasses.replace(
            b,
            checkpoint=dataclasses.replace(
                b.checkpoint, signature=_flip(b.checkpoint.signature, 20)
            ),
        ),
        "checkpoint_signature",
    ),
    (
        "checkpoint re-signed with another key (bundle key kept)",
        lambda b, _: dataclasses.replace(
            b,
            checkpoint=sign_checkpoint(
                MALLORY, b.checkpoint.tree_size, b.checkpoint.root, b.checkpoint.timestamp
            ),
        ),
        "checkpoint_signature",
    ),
    (
        "checkpoint's key id relabelled",
        lambda b, _: dataclasses.replace(
            b, checkpoint=dataclasses.replace(b.checkpoint, log_key_id=MALLORY.key_id())
        ),
        "checkpoint_signature",
    ),
    (
        "log key and checkpoint re-signed by another key, trusted key given",
        _resign_all_with(MALLORY),
        "checkpoint_signature",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "step"),
    [pytest.param(m, s, id=d) for d, m, s in TAMPER_CASES],
)
def test_tampered_bundle_fails_at_the_right_step(
    bundle: Bundle, log: Log, mutate: Mutation, step: str
) -> None:
    tampered = mutate(bundle, log)
    for anchors in (log.anchors(), None):  # the step fails online and offline alike
        with pytest.raises(AuditError) as err:
            verify_bundle(tampered, anchors=anchors, trusted_log_key=log.log_key.public_key())
        assert err.value.step == step
        assert isinstance(err.value, VerificationError)
        report = err.value.report
        assert report.failed_step.name == step
        failed_at = STEPS.index(step)
        statuses = [s.status for s in report.steps]
        assert statuses == [StepStatus.PASSED] * failed_at + [StepStatus.FAILED] + [
            StepStatus.SKIPPED
        ] * (len(STEPS) - failed_at - 1)
        assert not report.ok


def test_resigned_everything_passes_without_a_trusted_key_offline(bundle: Bundle, log: Log) -> None:
    """Without a trusted log key only the chain can catch a wholesale re-sign:
    the re-signed bundle is self-consistent, and the offline audit says so."""
    tampered = _resign_all_with(MALLORY)(bundle, log)
    assert verify_bundle(tampered, anchors=None).ok


CHAIN_CASES: list[tuple[str, Callable[[Bundle, Log], tuple[Bundle, FakeAnchors, int]], str]] = [
    (
        "chain root differs",
        lambda b, log: (
            b,
            FakeAnchors(
                {
                    (CHAIN_ID, REGISTRY.lower(), b.checkpoint.tree_size): OnChainAnchor(
                        log.tree.root(3), 12, TX_HASH, 5
                    )
                }
            ),
            1,
        ),
        "another root",
    ),
    (
        "another registry",
        lambda b, log: (
            dataclasses.replace(
                b, anchor=dataclasses.replace(b.anchor, registry_address=OTHER_REGISTRY)
            ),
            log.anchors(),
            1,
        ),
        "not anchored",
    ),
    (
        "wrong chain id in the bundle",
        lambda b, log: (
            dataclasses.replace(b, anchor=dataclasses.replace(b.anchor, chain_id=1)),
            log.anchors(),
            1,
        ),
        "another chain",
    ),
    (
        "RPC serves another chain",
        lambda b, log: (b, dataclasses.replace(log.anchors(), chain_id=1), 1),
        "another chain",
    ),
    ("tree size not anchored", lambda b, log: (b, log.anchors(3, 5), 1), "not anchored"),
    (
        "not enough confirmations",
        lambda b, log: (b, log.anchors(confirmations=2), 3),
        "not final",
    ),
    (
        "whole history re-signed by another key, no trusted key",
        lambda b, log: (
            _resign_all_with(MALLORY)(
                dataclasses.replace(
                    b, checkpoint=dataclasses.replace(b.checkpoint, root=log.tree.root(3))
                ),
                log,
            ),
            log.anchors(),
            1,
        ),
        "inclusion",
    ),
]


@pytest.mark.parametrize(
    ("setup", "message"), [pytest.param(s, m, id=d) for d, s, m in CHAIN_CASES]
)
def test_chain_anchor_failures(
    bundle: Bundle,
    log: Log,
    setup: Callable[[Bundle, Log], tuple[Bundle, FakeAnchors, int]],
    message: str,
) -> None:
    tampered, anchors, min_confirmations = setup(bundle, log)
    with pytest.raises(AuditError) as err:
        verify_bundle(tampered, anchors=anchors, min_confirmations=min_confirmations)
    if message == "inclusion":
        assert err.value.step == "inclusion"
        return
    assert err.value.step == "chain_anchor"
    assert message in err.value.message
    assert [s.status for s in err.value.report.steps] == [StepStatus.PASSED] * 4 + [
        StepStatus.FAILED
    ]
    verify_bundle(tampered, anchors=None)  # offline, nothing is wrong


def test_trusted_registry(bundle: Bundle, log: Log) -> None:
    assert verify_bundle(bundle, anchors=log.anchors(), trusted_registry=REGISTRY.lower()).ok
    moved = dataclasses.replace(
        bundle, anchor=dataclasses.replace(bundle.anchor, registry_address=OTHER_REGISTRY)
    )
    anchors = log.anchors()  # the other registry holds the same root: still refused
    anchors.anchors[(CHAIN_ID, OTHER_REGISTRY.lower(), log.tree.size)] = anchors.anchors[
        (CHAIN_ID, REGISTRY.lower(), log.tree.size)
    ]
    assert verify_bundle(moved, anchors=anchors).ok
    with pytest.raises(AuditError) as err:
        verify_bundle(moved, anchors=anchors, trusted_registry=REGISTRY)
    assert err.value.step == "chain_anchor"
    assert err.value.expected == REGISTRY and err.value.actual == OTHER_REGISTRY


def test_chain_root_mismatch_names_both_roots(bundle: Bundle, log: Log) -> None:
    anchors = log.anchors()
    key = (CHAIN_ID, REGISTRY.lower(), log.tree.size)
    anchors.anchors[key] = dataclasses.replace(anchors.anchors[key], root=log.tree.root(6))
    with pytest.raises(AuditError) as err:
        verify_bundle(bundle, anchors=anchors)
    assert err.value.expected == log.tree.root(6).hex()
    assert err.value.actual == bundle.checkpoint.root.hex()
    assert log.tree.root(6).hex() in str(err.value)


def test_enough_confirmations_passes(bundle: Bundle, log: Log) -> None:
    assert verify_bundle(bundle, anchors=log.anchors(confirmations=3), min_confirmations=3).ok
    with pytest.raises(ValueError):
        verify_bundle(bundle, anchors=log.anchors(), min_confirmations=0)


def test_unreachable_chain_is_inconclusive(bundle: Bundle, log: Log) -> None:
    anchors = log.anchors()
    anchors.fail = True
    with pytest.raises(AnchorLookupError) as err:
        verify_bundle(bundle, anchors=anchors)
    assert isinstance(err.value, AuditInconclusiveError)
    assert not isinstance(err.value, VerificationError)
    assert err.value.report is not None
    assert [s.status for s in err.value.report.steps][:4] == [StepStatus.PASSED] * 4


def test_failure_details_name_expected_and_actual(bundle: Bundle, log: Log) -> None:
    tampered = dataclasses.replace(
        bundle, promise=dataclasses.replace(bundle.promise, leaf_hash=b"\x00" * 32)
    )
    with pytest.raises(AuditError) as err:
        verify_bundle(tampered, anchors=None)
    assert err.value.expected == bundle.record.leaf_hash().hex()
    assert err.value.actual == "00" * 32
    failed = err.value.report.failed_step
    assert failed.expected == err.value.expected and failed.actual == err.value.actual
    assert err.value.report.to_dict()["steps"][1]["expected"] == err.value.expected


def test_a_misshapen_promise_proof_names_the_node_counts(bundle: Bundle) -> None:
    tampered = _replace_promise(bundle, batch_proof=bundle.promise.batch_proof[:1])
    with pytest.raises(AuditError) as err:
        verify_bundle(tampered, anchors=None)
    assert err.value.step == "leaf_hash"
    assert "batch proof" in err.value.message
    assert (err.value.expected, err.value.actual) == ("2", "1")


def test_the_promise_batch_is_not_the_checkpoint(log: Log) -> None:
    """A promise's batch root is the root of its batch alone, not of the log."""
    bundle = log.bundle(5)
    assert bundle.promise.batch_first_index == 4
    assert bundle.promise.batch_root() != bundle.checkpoint.root
    assert verify_bundle(bundle, anchors=log.anchors()).ok


# --------------------------------------------------------------------------- parsing


def test_unknown_versions_are_refused(bundle: Bundle) -> None:
    for version in (0, 2, "1", True, None, 1.0):
        data = {**bundle.to_dict(), "version": version}
        with pytest.raises(UnsupportedBundleVersionError) as err:
            Bundle.from_dict(data)
        assert err.value.path == "version"
    data = bundle.to_dict()
    del data["version"]
    with pytest.raises(BundleFormatError):
        Bundle.from_dict(data)


def _edit(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    *parents, last = path.split(".")
    target = out
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return out


_DELETE = object()

MALFORMED: list[tuple[str, Any, str]] = [
    ("record", _DELETE, ""),
    ("extra", 1, ""),
    ("record.record.payload", "x", "record.record.payload"),
    ("record.record.payload", {"price": 9.99}, "record.record.payload.price"),
    ("record.signature", "***", "record.signature"),
    ("actor_public_key", "not a pem", "actor_public_key"),
    ("actor_public_key", 5, "actor_public_key"),
    (
        "log_public_key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "log_public_key",
    ),
    ("promise.index", -1, "promise.index"),
    ("promise.leaf_hash", "00", "promise.leaf_hash"),
    ("promise.batch_size", 0, "promise.batch_size"),
    ("promise.batch_proof", ["zz" * 32], "promise.batch_proof[0]"),
    ("promise.batch_proof", "ab", "promise.batch_proof"),
    ("inclusion.hashes", "ab", "inclusion.hashes"),
    ("inclusion.hashes", ["zz" * 32], "inclusion.hashes[0]"),
    ("inclusion.hashes", ["AB" * 32], "inclusion.hashes[0]"),
    ("inclusion.hashes", ["ab" * 31], "inclusion.hashes[0]"),
    ("inclusion.hashes", ["ab" * 32] * 65, "inclusion.hashes"),
    ("inclusion.tree_size", True, "inclusion.tree_size"),
    ("inclusion.extra", 1, "inclusion"),
    ("checkpoint.root", "ab", "checkpoint.root"),
    ("checkpoint.tree_size", None, "checkpoint.tree_size"),
    ("anchor.chain_id", 0, "anchor.chain_id"),
    ("anchor.registry_address", "0x1234", "anchor.registry_address"),
    (
        "anchor.registry_address",
        "5FbDB2315678afecb367f032d93F642f64180aa3",
        "anchor.registry_address",
    ),
    ("anchor.tx_hash", "0x" + "ab" * 31, "anchor.tx_hash"),
    ("anchor.block_number", -5, "anchor.block_number"),
    ("anchor", None, "anchor"),
]


@pytest.mark.parametrize(("path", "value", "error_path"), MALFORMED)
def test_malformed_bundles_are_refused(
    bundle: Bundle, path: str, value: Any, error_path: str
) -> None:
    with pytest.raises(BundleFormatError) as err:
        Bundle.from_dict(_edit(bundle.to_dict(), path, value))
    assert err.value.path == error_path
    assert isinstance(err.value, RecordFormatError)


@pytest.mark.parametrize("text", ["", "nope", "[1]", '{"version": 1, "version": 1}', b"\x80"])
def test_bundle_from_bad_json(text: str | bytes) -> None:
    with pytest.raises(BundleFormatError):
        Bundle.from_json(text)


def test_non_sm2_public_key_is_refused(bundle: Bundle) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(BundleFormatError) as err:
        Bundle.from_dict({**bundle.to_dict(), "actor_public_key": p256})
    assert err.value.path == "actor_public_key"


# --------------------------------------------------------------------------- the documented example

DOC = Path(__file__).resolve().parents[2] / "docs" / "bundle-v1.md"


def _doc_example() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    data: dict[str, Any] = json.loads(block)
    return data


def test_documented_example_verifies_offline() -> None:
    bundle = Bundle.from_dict(_doc_example())
    report = verify_bundle(bundle, anchors=None)
    assert report.ok
    text = DOC.read_text(encoding="utf-8")
    assert bundle.record.record.canonical_bytes().decode() in text
    assert bundle.checkpoint.signed_bytes().decode() in text
    assert bundle.promise.signed_bytes().decode() in text
    # The example's promise is from a batch of several records: it has a proof.
    assert bundle.promise.batch_size > 1 and bundle.promise.batch_proof


def test_documented_fields_are_the_bundle_fields(bundle: Bundle) -> None:
    text = DOC.read_text(encoding="utf-8")
    for key, value in bundle.to_dict().items():
        assert f"| `{key}` |" in text or f"| `{key}." in text, key
        if isinstance(value, dict) and key != "record":
            for sub in value:
                assert f"`{key}.{sub}`" in text, f"{key}.{sub}"
    for step in STEPS:
        assert f"**`{step}`**" in text
