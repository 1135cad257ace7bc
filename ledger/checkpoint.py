"""The log's signed statements: promises (signed per append batch) and checkpoints.

* A :class:`PromiseBatch` is the log's SM2 signature, made once per append
  batch, over (first index, size, batch root, timestamp): "the leaves whose
  RFC 9162 Merkle root is ``batch_root`` are, in order, entries
  ``first_index … first_index + size - 1`` and will be integrated".
* A :class:`Promise` (like a Certificate Transparency SCT) is what one record
  gets back at once on append: its leaf hash and index, the batch statement's
  fields and signature, and ``batch_proof``, the inclusion proof of the leaf
  at position ``index - batch_first_index`` in the batch's tree. Verifying it
  recomputes the batch root from the proof and checks the one signature, so
  a batch of any size costs the log a single SM2 signature and each promise
  stays independently verifiable. A one-record batch has an empty proof and
  its root is the leaf hash.
* A :class:`Checkpoint` is the log's SM2 signature over (tree size, root,
  timestamp): "the first ``tree_size`` leaves have this root".

The signed bytes are the RFC 8785 encoding of an object carrying a
domain-separation ``kind`` so that a signature of one statement can never be
replayed as another::

    {"kind": "shancheng.promise-batch.v1", "first_index": int, "size": int,
     "batch_root": hex, "timestamp": int, "log_key_id": hex}
    {"kind": "shancheng.checkpoint.v1", "tree_size": int, "root": hex,
     "timestamp": int, "log_key_id": hex}

``verify(log_key)`` raises :class:`KeyMismatchError` when the key is not the
one the statement names, :class:`ledger.errors.InvalidSignature` when the
signature does not verify — for a promise also when its batch proof cannot
place its leaf in its batch at all (:class:`PromiseProofError`, a subclass).
Malformed values (wrong types, sizes, ranges) raise
:class:`ledger.records.RecordFormatError` on construction and parsing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import InvalidSignature, VerificationError
from ledger.merkle import InvalidProofError, node_hash, root_from_inclusion_proof
from ledger.records import (
    Fields,
    RecordFormatError,
    canonical_json,
    check_hash,
    check_int,
    check_key_id,
    check_signature_bytes,
    encode_base64,
    parse_json_object,
)
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import DIGEST_SIZE

__all__ = [
    "CHECKPOINT_KIND",
    "MAX_BATCH_PROOF_NODES",
    "PROMISE_BATCH_KIND",
    "Checkpoint",
    "KeyMismatchError",
    "Promise",
    "PromiseBatch",
    "PromiseProofError",
    "batch_tree",
    "sign_checkpoint",
    "sign_promise",
    "sign_promise_batch",
    "sign_promises",
]

PROMISE_BATCH_KIND: Final = "shancheng.promise-batch.v1"
CHECKPOINT_KIND: Final = "shancheng.checkpoint.v1"

MAX_BATCH_PROOF_NODES: Final = 64
"""At most this many nodes in a promise's batch proof (a batch of 2**53 leaves needs 53)."""

_PROMISE_FIELDS: Final = (
    "leaf_hash",
    "index",
    "timestamp",
    "log_key_id",
    "batch_first_index",
    "batch_size",
    "batch_proof",
    "signature",
)
_HEX_HASH: Final = re.compile(f"[0-9a-f]{{{2 * DIGEST_SIZE}}}")
_CHECKPOINT_FIELDS: Final = ("tree_size", "root", "timestamp", "log_key_id", "signature")


class KeyMismatchError(VerificationError):
    """A statement names a log key other than the one it is verified with.

    ``expected`` is the key id the statement names; ``actual`` the id of the
    key offered."""

    def __init__(self, expected: str, actual: str, *, what: str = "statement") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} is by log key {expected}, but was checked with key {actual}")


class PromiseProofError(InvalidSignature):
    """A promise's batch proof cannot place its leaf in its batch: the index lies
    outside ``[batch_first_index, batch_first_index + batch_size)`` or the proof
    has the wrong number of nodes for that position. No signed statement follows
    from such a promise, so it is an :class:`~ledger.errors.InvalidSignature`.

    ``expected``/``actual`` describe the mismatch (e.g. the node counts)."""

    def __init__(self, message: str, expected: object, actual: object) -> None:
        self.reason = message
        self.expected = expected
        self.actual = actual
        super().__init__(f"{message} (expected {expected}, actual {actual})")


def _check_key(expected: str, log_key: SM2PublicKey, what: str) -> None:
    actual = log_key.key_id()
    if actual != expected:
        raise KeyMismatchError(expected, actual, what=what)


def _hex_hash(value: Any, path: str) -> bytes:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise RecordFormatError(f"expected a {DIGEST_SIZE}-byte hash as lowercase hex", path=path)
    return bytes.fromhex(value)


def _check_proof_nodes(proof: Any, path: str) -> tuple[bytes, ...]:
    if not isinstance(proof, (tuple, list)):
        raise RecordFormatError(
            f"expected a sequence of hashes, got {type(proof).__name__}", path=path
        )
    if len(proof) > MAX_BATCH_PROOF_NODES:
        raise RecordFormatError(
            f"{len(proof)} proof nodes (at most {MAX_BATCH_PROOF_NODES})", path=path
        )
    for i, node in enumerate(proof):
        check_hash(node, f"{path}[{i}]")
    return tuple(proof)


@dataclass(frozen=True, slots=True)
class PromiseBatch:
    """The statement the log signs once per append batch (see the module docstring):
    leaves with RFC 9162 root ``batch_root`` are entries ``first_index`` onwards."""

    first_index: int
    size: int
    batch_root: bytes
    timestamp: int
    log_key_id: str
    signature: bytes

    def __post_init__(self) -> None:
        check_int(self.first_index, "first_index")
        check_int(self.size, "size", minimum=1)
        check_hash(self.batch_root, "batch_root")
        check_int(self.timestamp, "timestamp")
        check_key_id(self.log_key_id, "log_key_id")
        check_signature_bytes(self.signature, "signature")

    def signed_bytes(self) -> bytes:
        """The bytes the log signs (see the module docstring)."""
        return _batch_bytes(
            self.first_index, self.size, self.batch_root, self.timestamp, self.log_key_id
        )

    def verify(self, log_key: SM2PublicKey) -> None:
        """Raises :class:`KeyMismatchError` or :class:`~ledger.errors.InvalidSignature`."""
        _check_key(self.log_key_id, log_key, "promise batch")
        log_key.verify(self.signature, self.signed_bytes())

    def promise(self, index: int, leaf_hash: bytes, batch_proof: Sequence[bytes]) -> Promise:
        """The promise of the leaf ``leaf_hash`` at ``index`` in this batch, with its
        inclusion proof in the batch's tree (not checked here: see :meth:`Promise.verify`)."""
        return Promise(
            leaf_hash=leaf_hash,
            index=index,
            timestamp=self.timestamp,
            log_key_id=self.log_key_id,
            batch_first_index=self.first_index,
            batch_size=self.size,
            batch_proof=tuple(batch_proof),
            signature=self.signature,
        )


@dataclass(frozen=True, slots=True)
class Promise:
    """The log's signed promise to integrate ``leaf_hash`` at ``index``.

    ``batch_first_index``/``batch_size`` name the append batch the promise was
    signed in, ``batch_proof`` is the RFC 9162 inclusion proof of the leaf at
    position ``index - batch_first_index`` in that batch's tree, and
    ``signature`` is the batch's (:class:`PromiseBatch`)."""

    leaf_hash: bytes
    index: int
    timestamp: int
    log_key_id: str
    batch_first_index: int
    batch_size: int
    batch_proof: tuple[bytes, ...]
    signature: bytes

    def __post_init__(self) -> None:
        check_hash(self.leaf_hash, "leaf_hash")
        check_int(self.index, "index")
        check_int(self.timestamp, "timestamp")
        check_key_id(self.log_key_id, "log_key_id")
        check_int(self.batch_first_index, "batch_first_index")
        check_int(self.batch_size, "batch_size", minimum=1)
        object.__setattr__(self, "batch_proof", _check_proof_nodes(self.batch_proof, "batch_proof"))
        check_signature_bytes(self.signature, "signature")

    def batch_root(self) -> bytes:
        """The batch root implied by the leaf hash, its position and the proof.

        Raises :class:`PromiseProofError` when the index is outside the batch or
        the proof has the wrong number of nodes."""
        position = self.index - self.batch_first_index
        if not 0 <= position < self.batch_size:
            last = self.batch_first_index + self.batch_size - 1
            raise PromiseProofError(
                "the promise's index is outside its batch",
                f"an index in [{self.batch_first_index}, {last}]",
                self.index,
            )
        try:
            return root_from_inclusion_proof(
                self.leaf_hash, position, self.batch_size, self.batch_proof
            )
        except InvalidProofError as exc:  # the only ProofError left possible here
            raise PromiseProofError(
                "the batch proof has the wrong number of nodes",
                exc.expected_length,
                exc.actual_length,
            ) from None

    def statement(self) -> PromiseBatch:
        """The signed batch statement this promise rests on (root recomputed from the
        proof). Raises :class:`PromiseProofError` like :meth:`batch_root`."""
        return PromiseBatch(
            first_index=self.batch_first_index,
            size=self.batch_size,
            batch_root=self.batch_root(),
            timestamp=self.timestamp,
            log_key_id=self.log_key_id,
            signature=self.signature,
        )

    def signed_bytes(self) -> bytes:
        """The bytes the log signed for this promise's batch, if the promise is
        right (see the module docstring). Raises :class:`PromiseProofError` like
        :meth:`batch_root`."""
        return self.statement().signed_bytes()

    def verify(self, log_key: SM2PublicKey) -> None:
        """Check that the log signed a batch holding ``leaf_hash`` at ``index``.

        Raises :class:`KeyMismatchError` (another key), :class:`PromiseProofError`
        (the proof cannot place the leaf in the batch) or
        :class:`~ledger.errors.InvalidSignature` (any field altered: the
        recomputed statement is not what the log signed)."""
        _check_key(self.log_key_id, log_key, "promise")
        log_key.verify(self.signature, self.signed_bytes())

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaf_hash": self.leaf_hash.hex(),
            "index": self.index,
            "timestamp": self.timestamp,
            "log_key_id": self.log_key_id,
            "batch_first_index": self.batch_first_index,
            "batch_size": self.batch_size,
            "batch_proof": [node.hex() for node in self.batch_proof],
            "signature": encode_base64(self.signature),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Promise:
        f = Fields(data, path, _PROMISE_FIELDS)
        raw = f.raw("batch_proof")
        where = f.path("batch_proof")
        if not isinstance(raw, list):
            raise RecordFormatError("expected a list of hex hashes", path=where)
        if len(raw) > MAX_BATCH_PROOF_NODES:
            raise RecordFormatError(
                f"{len(raw)} proof nodes (at most {MAX_BATCH_PROOF_NODES})", path=where
            )
        proof = tuple(_hex_hash(node, f"{where}[{i}]") for i, node in enumerate(raw))
        return cls(
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE),
            index=f.integer("index"),
            timestamp=f.integer("timestamp"),
            log_key_id=f.key_id("log_key_id"),
            batch_first_index=f.integer("batch_first_index"),
            batch_size=f.integer("batch_size", minimum=1),
            batch_proof=proof,
            signature=f.base64_bytes("signature"),
        )

    def to_json(self) -> str:
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_json(cls, data: str | bytes) -> Promise:
        return cls.from_dict(parse_json_object(data, "promise"))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The log's signed statement that its first ``tree_size`` leaves have ``root``."""

    tree_size: int
    root: bytes
    timestamp: int
    log_key_id: str
    signature: bytes

    def __post_init__(self) -> None:
        check_int(self.tree_size, "tree_size")
        check_hash(self.root, "root")
        check_int(self.timestamp, "timestamp")
        check_key_id(self.log_key_id, "log_key_id")
        check_signature_bytes(self.signature, "signature")

    def signed_bytes(self) -> bytes:
        """The bytes the log signs (see the module docstring)."""
        return _checkpoint_bytes(self.tree_size, self.root, self.timestamp, self.log_key_id)

    def verify(self, log_key: SM2PublicKey) -> None:
        """Raises :class:`KeyMismatchError` or :class:`~ledger.errors.InvalidSignature`."""
        _check_key(self.log_key_id, log_key, "checkpoint")
        log_key.verify(self.signature, self.signed_bytes())

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "log_key_id": self.log_key_id,
            "signature": encode_base64(self.signature),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Checkpoint:
        f = Fields(data, path, _CHECKPOINT_FIELDS)
        return cls(
            tree_size=f.integer("tree_size"),
            root=f.hex_bytes("root", size=DIGEST_SIZE),
            timestamp=f.integer("timestamp"),
            log_key_id=f.key_id("log_key_id"),
            signature=f.base64_bytes("signature"),
        )

    def to_json(self) -> str:
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_json(cls, data: str | bytes) -> Checkpoint:
        return cls.from_dict(parse_json_object(data, "checkpoint"))


def _batch_bytes(
    first_index: int, size: int, batch_root: bytes, timestamp: int, log_key_id: str
) -> bytes:
    return canonical_json(
        {
            "kind": PROMISE_BATCH_KIND,
            "first_index": first_index,
            "size": size,
            "batch_root": batch_root.hex(),
            "timestamp": timestamp,
            "log_key_id": log_key_id,
        }
    )


def _checkpoint_bytes(tree_size: int, root: bytes, timestamp: int, log_key_id: str) -> bytes:
    return canonical_json(
        {
            "kind": CHECKPOINT_KIND,
            "tree_size": tree_size,
            "root": root.hex(),
            "timestamp": timestamp,
            "log_key_id": log_key_id,
        }
    )


def sign_promise_batch(
    log_key: SM2PrivateKey, first_index: int, leaf_hashes: Sequence[bytes], timestamp: int
) -> tuple[PromiseBatch, list[Promise]]:
    """Sign one batch: ``leaf_hashes`` are, in order, entries ``first_index`` onwards.

    Returns the signed statement and one promise per leaf (same order), each
    with its inclusion proof in the batch's tree. One SM2 signature; O(n)
    hashing to build the batch tree, O(log n) per proof. Requires at least one
    leaf hash (else :class:`~ledger.records.RecordFormatError`).
    """
    check_int(first_index, "first_index")
    check_int(timestamp, "timestamp")
    if not leaf_hashes:
        raise RecordFormatError("a promise batch needs at least one leaf hash", path="leaf_hashes")
    for i, digest in enumerate(leaf_hashes):
        check_hash(digest, f"leaf_hashes[{i}]")
    check_int(first_index + len(leaf_hashes) - 1, "last index")
    root, proofs = batch_tree(leaf_hashes)
    key_id = log_key.key_id()
    size = len(leaf_hashes)
    signature = log_key.sign(_batch_bytes(first_index, size, root, timestamp, key_id))
    batch = PromiseBatch(first_index, size, root, timestamp, key_id, signature)
    # Every field was checked above or made here: skip the per-promise checks
    # (this runs once per appended record, inside the log's write lock).
    promises = [
        _checked_promise(
            digest, first_index + i, timestamp, key_id, first_index, size, proof, signature
        )
        for i, (digest, proof) in enumerate(zip(leaf_hashes, proofs, strict=True))
    ]
    return batch, promises


def _checked_promise(
    leaf_hash: bytes,
    index: int,
    timestamp: int,
    log_key_id: str,
    batch_first_index: int,
    batch_size: int,
    batch_proof: list[bytes],
    signature: bytes,
) -> Promise:
    """A :class:`Promise` from values already known to be well formed (no checks)."""
    promise = object.__new__(Promise)
    for name, value in (
        ("leaf_hash", leaf_hash),
        ("index", index),
        ("timestamp", timestamp),
        ("log_key_id", log_key_id),
        ("batch_first_index", batch_first_index),
        ("batch_size", batch_size),
        ("batch_proof", tuple(batch_proof)),
        ("signature", signature),
    ):
        object.__setattr__(promise, name, value)
    return promise


def batch_tree(leaf_hashes: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """RFC 9162 root of ``leaf_hashes`` (at least one) and every leaf's inclusion proof.

    Builds the tree level by level, carrying a level's unpaired last node up
    unchanged, which yields exactly the RFC 9162 tree (the largest power of two
    on the left at every split): n - 1 hashes for the root, O(log n) list reads
    per proof, so signing a batch costs O(n log n) cheap steps, not n proofs'
    worth of tree planning."""
    levels = [list(leaf_hashes)]
    while len(level := levels[-1]) > 1:
        up = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])
        levels.append(up)
    below_root = levels[:-1]
    proofs: list[list[bytes]] = []
    for leaf in range(len(leaf_hashes)):
        path: list[bytes] = []
        position = leaf
        for level in below_root:
            sibling = position ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            position >>= 1
        proofs.append(path)
    return levels[-1][0], proofs


def sign_promises(
    log_key: SM2PrivateKey, first_index: int, leaf_hashes: Sequence[bytes], timestamp: int
) -> list[Promise]:
    """The promises of one batch (see :func:`sign_promise_batch`): one SM2 signature
    for the whole list."""
    return sign_promise_batch(log_key, first_index, leaf_hashes, timestamp)[1]


def sign_promise(log_key: SM2PrivateKey, leaf_hash: bytes, index: int, timestamp: int) -> Promise:
    """The promise of a one-record batch: ``leaf_hash`` is (or will be) leaf ``index``.
    Its batch proof is empty and its batch root is ``leaf_hash``."""
    check_hash(leaf_hash, "leaf_hash")
    [promise] = sign_promises(log_key, index, [leaf_hash], timestamp)
    return promise


def sign_checkpoint(
    log_key: SM2PrivateKey, tree_size: int, root: bytes, timestamp: int
) -> Checkpoint:
    """The log's checkpoint: its first ``tree_size`` leaves have ``root``."""
    check_int(tree_size, "tree_size")
    check_hash(root, "root")
    check_int(timestamp, "timestamp")
    key_id = log_key.key_id()
    signature = log_key.sign(_checkpoint_bytes(tree_size, root, timestamp, key_id))
    return Checkpoint(tree_size, root, timestamp, key_id, signature)
