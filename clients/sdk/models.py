"""Typed answers of the exchange API: frozen dataclasses with ``from_dict``.

Signed statements are the :mod:`ledger` types themselves
(:class:`ledger.checkpoint.Checkpoint`, :class:`ledger.checkpoint.Promise`,
:class:`ledger.records.SignedRecord`, :class:`ledger.bundle.Bundle`), so what
the SDK returns can be verified, stored and re-serialised with the ledger's
own code. Parsing is strict: a missing or ill-typed field raises
:class:`ledger.records.RecordFormatError` (the client turns it into
:class:`clients.sdk.errors.ResponseFormatError`).

The health answer's shape (:class:`Health`, :class:`DatabaseStatus`,
:class:`ChainStatus`) is :mod:`ledger.protocol.health`, which the exchange
serves; it is re-exported here.

Every call that writes answers with an :class:`Appended` (for the log's own
``POST /log/records``) or carries one under ``"log"`` (the marketplace's
resources): parse it with :meth:`Appended.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ledger.checkpoint import Promise
from ledger.errors import KeyFormatError
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.protocol.health import ChainStatus, DatabaseStatus, Health
from ledger.records import Fields, RecordFormatError, SignedRecord
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import DIGEST_SIZE

__all__ = [
    "Anchor",
    "Appended",
    "ChainStatus",
    "ConsistencyProof",
    "DatabaseStatus",
    "Entry",
    "Health",
    "InclusionProof",
    "LogKey",
]

_MAX_PROOF_NODES: Final = 64


def _fields(data: Any, path: str, names: tuple[str, ...]) -> Fields:
    """A strict reader of ``names`` (all required) that ignores other fields, so a
    server adding a field to a response does not break older clients."""
    if not isinstance(data, dict):
        raise RecordFormatError(f"expected a JSON object, got {type(data).__name__}", path=path)
    return Fields({k: v for k, v in data.items() if k in names}, path, names)


def _public_key(f: Fields, key: str) -> SM2PublicKey:
    try:
        return SM2PublicKey.from_pem(f.string(key))
    except KeyFormatError as exc:
        raise RecordFormatError(f"not an SM2 public key PEM: {exc}", path=f.path(key)) from None


def _hashes(f: Fields, key: str) -> tuple[bytes, ...]:
    raw = f.raw(key)
    if not isinstance(raw, list) or len(raw) > _MAX_PROOF_NODES:
        raise RecordFormatError(
            f"expected a list of at most {_MAX_PROOF_NODES} hex hashes", path=f.path(key)
        )
    out = []
    for i, node in enumerate(raw):
        try:
            value = bytes.fromhex(node) if isinstance(node, str) else b""
        except ValueError:
            value = b""
        if len(value) != DIGEST_SIZE:
            raise RecordFormatError("expected a 32-byte hex hash", path=f"{f.path(key)}[{i}]")
        out.append(value)
    return tuple(out)


def _optional(data: dict[str, Any], key: str, kind: type, path: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RecordFormatError(f"expected {kind.__name__} or null", path=f"{path}.{key}")
    return value


def _object(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RecordFormatError("expected a JSON object", path=path)
    return data


# --------------------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class LogKey:
    """The log's public key (``/.well-known/shancheng/log-key``); ``key_id`` is checked
    to be the key's own id on parsing."""

    key_id: str
    public_key: SM2PublicKey

    @classmethod
    def from_dict(cls, data: Any) -> LogKey:
        f = _fields(data, "", ("key_id", "public_key"))
        key_id = f.key_id("key_id")
        public_key = _public_key(f, "public_key")
        if public_key.key_id() != key_id:
            raise RecordFormatError(
                f"the published key's id is {public_key.key_id()}, not {key_id}", path="key_id"
            )
        return cls(key_id, public_key)


@dataclass(frozen=True, slots=True)
class Appended:
    """Where a record went: its ``index``, ``leaf_hash`` and the log's signed ``promise``
    to integrate it. The client checks the promise before returning this."""

    index: int
    leaf_hash: bytes
    promise: Promise

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "promise": self.promise.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Appended:
        f = _fields(data, path, ("index", "leaf_hash", "promise"))
        return cls(
            index=f.integer("index"),
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE),
            promise=Promise.from_dict(f.raw("promise"), path=f.path("promise")),
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """An integrated log entry: the signed record as stored, the actor's key, the promise."""

    index: int
    leaf_hash: bytes
    record: SignedRecord
    public_key: SM2PublicKey
    promise: Promise

    @classmethod
    def from_dict(cls, data: Any) -> Entry:
        f = _fields(data, "", ("index", "leaf_hash", "record", "public_key", "promise"))
        return cls(
            index=f.integer("index"),
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE),
            record=SignedRecord.from_dict(f.raw("record"), path="record"),
            public_key=_public_key(f, "public_key"),
            promise=Promise.from_dict(f.raw("promise"), path="promise"),
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 audit path of leaf ``index`` in the tree of ``tree_size``."""

    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]

    def verify(self, root: bytes) -> None:
        """Raise :class:`ledger.merkle.ProofError` unless the path leads to ``root``
        (take it from a verified checkpoint of ``tree_size``)."""
        verify_inclusion(self.leaf_hash, self.index, self.tree_size, self.hashes, root)

    @classmethod
    def from_dict(cls, data: Any) -> InclusionProof:
        f = _fields(data, "", ("index", "tree_size", "leaf_hash", "hashes"))
        return cls(
            index=f.integer("index"),
            tree_size=f.integer("tree_size", minimum=1),
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE),
            hashes=_hashes(f, "hashes"),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between tree sizes ``first`` <= ``second``."""

    first: int
    second: int
    hashes: tuple[bytes, ...]

    def verify(self, first_root: bytes, second_root: bytes) -> None:
        """Raise :class:`ledger.merkle.ProofError` unless the tree (``first``,
        ``first_root``) is a prefix of (``second``, ``second_root``)."""
        verify_consistency(self.first, self.second, first_root, second_root, self.hashes)

    @classmethod
    def from_dict(cls, data: Any) -> ConsistencyProof:
        f = _fields(data, "", ("first", "second", "hashes"))
        return cls(f.integer("first"), f.integer("second"), _hashes(f, "hashes"))


@dataclass(frozen=True, slots=True)
class Anchor:
    """A checkpoint chosen for anchoring and its chain state (``pending``, ``sent``,
    ``anchored`` once mined, ``final`` after the configured confirmations).

    This is the exchange's account; an auditor checks the chain itself
    (:meth:`clients.sdk.ExchangeClient.audit_log`)."""

    tree_size: int
    root: bytes
    state: str
    chain_id: int
    registry_address: str
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Anchor:
        f = _fields(data, path, ("tree_size", "root", "state", "chain_id", "registry_address"))
        d = _object(data, path)
        return cls(
            tree_size=f.integer("tree_size"),
            root=f.hex_bytes("root", size=DIGEST_SIZE),
            state=f.string("state"),
            chain_id=f.integer("chain_id"),
            registry_address=f.string("registry_address"),
            tx_hash=_optional(d, "tx_hash", str, path),
            block_number=_optional(d, "block_number", int, path),
            block_hash=_optional(d, "block_hash", str, path),
        )
