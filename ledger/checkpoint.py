"""The log's signed statements: promises and checkpoints.

* A :class:`Promise` (like a Certificate Transparency SCT) is the log's SM2
  signature, returned at once on append, over (leaf hash, index, timestamp):
  "this leaf is at this index and will be integrated".
* A :class:`Checkpoint` is the log's SM2 signature over (tree size, root,
  timestamp): "the first ``tree_size`` leaves have this root".

The signed bytes are the RFC 8785 encoding of an object carrying a
domain-separation ``kind`` so that a signature of one statement can never be
replayed as another::

    {"kind": "shancheng.promise.v1", "leaf_hash": hex, "index": int,
     "timestamp": int, "log_key_id": hex}
    {"kind": "shancheng.checkpoint.v1", "tree_size": int, "root": hex,
     "timestamp": int, "log_key_id": hex}

``verify(log_key)`` raises :class:`KeyMismatchError` when the key is not the
one the statement names, :class:`ledger.errors.InvalidSignature` when the
signature does not verify. Malformed JSON raises
:class:`ledger.records.RecordFormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import VerificationError
from ledger.records import (
    Fields,
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
    "PROMISE_KIND",
    "Checkpoint",
    "KeyMismatchError",
    "Promise",
    "sign_checkpoint",
    "sign_promise",
]

PROMISE_KIND: Final = "shancheng.promise.v1"
CHECKPOINT_KIND: Final = "shancheng.checkpoint.v1"

_PROMISE_FIELDS: Final = ("leaf_hash", "index", "timestamp", "log_key_id", "signature")
_CHECKPOINT_FIELDS: Final = ("tree_size", "root", "timestamp", "log_key_id", "signature")


class KeyMismatchError(VerificationError):
    """A statement names a log key other than the one it is verified with.

    ``expected`` is the key id the statement names; ``actual`` the id of the
    key offered."""

    def __init__(self, expected: str, actual: str, *, what: str = "statement") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what} is by log key {expected}, but was checked with key {actual}")


def _check_key(expected: str, log_key: SM2PublicKey, what: str) -> None:
    actual = log_key.key_id()
    if actual != expected:
        raise KeyMismatchError(expected, actual, what=what)


@dataclass(frozen=True, slots=True)
class Promise:
    """The log's signed promise to integrate ``leaf_hash`` at ``index``."""

    leaf_hash: bytes
    index: int
    timestamp: int
    log_key_id: str
    signature: bytes

    def __post_init__(self) -> None:
        check_hash(self.leaf_hash, "leaf_hash")
        check_int(self.index, "index")
        check_int(self.timestamp, "timestamp")
        check_key_id(self.log_key_id, "log_key_id")
        check_signature_bytes(self.signature, "signature")

    def signed_bytes(self) -> bytes:
        """The bytes the log signs (see the module docstring)."""
        return _promise_bytes(self.leaf_hash, self.index, self.timestamp, self.log_key_id)

    def verify(self, log_key: SM2PublicKey) -> None:
        """Raises :class:`KeyMismatchError` or :class:`~ledger.errors.InvalidSignature`."""
        _check_key(self.log_key_id, log_key, "promise")
        log_key.verify(self.signature, self.signed_bytes())

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaf_hash": self.leaf_hash.hex(),
            "index": self.index,
            "timestamp": self.timestamp,
            "log_key_id": self.log_key_id,
            "signature": encode_base64(self.signature),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Promise:
        f = Fields(data, path, _PROMISE_FIELDS)
        return cls(
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE),
            index=f.integer("index"),
            timestamp=f.integer("timestamp"),
            log_key_id=f.key_id("log_key_id"),
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


def _promise_bytes(leaf_hash: bytes, index: int, timestamp: int, log_key_id: str) -> bytes:
    return canonical_json(
        {
            "kind": PROMISE_KIND,
            "leaf_hash": leaf_hash.hex(),
            "index": index,
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


def sign_promise(log_key: SM2PrivateKey, leaf_hash: bytes, index: int, timestamp: int) -> Promise:
    """The log's promise that ``leaf_hash`` is (or will be) leaf ``index``."""
    check_hash(leaf_hash, "leaf_hash")
    check_int(index, "index")
    check_int(timestamp, "timestamp")
    key_id = log_key.key_id()
    signature = log_key.sign(_promise_bytes(leaf_hash, index, timestamp, key_id))
    return Promise(leaf_hash, index, timestamp, key_id, signature)


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
