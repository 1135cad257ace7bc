"""The log's answers, defined once: the exchange serves these classes and the SDK
parses them.

- :class:`LogKey`: the log's public key (``/.well-known/shancheng/log-key``).
- :class:`Appended`: where a record went (``POST /log/records``, and ``"log"`` in
  every marketplace answer that wrote one): its index, leaf hash and the log's
  signed :class:`PromiseBody` to integrate it.
- :class:`Entry`: an integrated entry (``GET /log/entries/{index}``).
- :class:`InclusionProof`, :class:`ConsistencyProof`: RFC 9162 proofs.
- :class:`Anchor`: a checkpoint chosen for anchoring and its chain state
  (``pending``, ``sent``, ``anchored`` once mined, ``final`` after the configured
  confirmations); the exchange's account of it: an auditor checks the chain
  itself.

Fields hold the wire form (hashes lowercase hex, signatures standard base64,
keys PEM: the ``to_dict()`` forms of :mod:`ledger.records` and
:mod:`ledger.checkpoint`); properties give the bytes, keys, records and
:class:`ledger.checkpoint.Promise` a client verifies. ``from_dict`` checks all of
them (a malformed one raises :class:`ledger.records.RecordFormatError` naming
the field) and ignores fields it does not know. Only :class:`PromiseBody` has a
class docstring: a docstring becomes the schema's OpenAPI description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ledger.checkpoint import Promise
from ledger.errors import KeyFormatError
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.protocol.reader import HEX64, JSONObject
from ledger.records import Fields, RecordFormatError, SignedRecord
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import DIGEST_SIZE

__all__ = [
    "Anchor",
    "Appended",
    "ConsistencyProof",
    "Entry",
    "InclusionProof",
    "LogKey",
    "PromiseBody",
]

MAX_PROOF_NODES: Final = 64


def _fields(data: Any, path: str, names: tuple[str, ...]) -> Fields:
    """A strict reader of ``names`` (all required) that ignores other fields."""
    if not isinstance(data, dict):
        raise RecordFormatError(f"expected a JSON object, got {type(data).__name__}", path=path)
    return Fields({k: v for k, v in data.items() if k in names}, path, names)


def _public_key(pem: str, path: str) -> SM2PublicKey:
    try:
        return SM2PublicKey.from_pem(pem)
    except KeyFormatError as exc:
        raise RecordFormatError(f"not an SM2 public key PEM: {exc}", path=path) from None


def _hashes(f: Fields, key: str) -> list[str]:
    raw = f.raw(key)
    if not isinstance(raw, list) or len(raw) > MAX_PROOF_NODES:
        raise RecordFormatError(
            f"expected a list of at most {MAX_PROOF_NODES} hex hashes", path=f.path(key)
        )
    for i, node in enumerate(raw):
        if not isinstance(node, str) or not HEX64.fullmatch(node):
            raise RecordFormatError("expected a 32-byte hex hash", path=f"{f.path(key)}[{i}]")
    return list(raw)


def _hex_bytes(hashes: list[str]) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(node) for node in hashes)


@dataclass(frozen=True, slots=True)
class LogKey:
    key_id: str = field(metadata={"description": "Hex SM3 of the key's DER SubjectPublicKeyInfo."})
    public_key: str = field(
        metadata={"description": "SubjectPublicKeyInfo PEM of the log's SM2 key."}
    )

    @classmethod
    def of(cls, key: SM2PublicKey) -> LogKey:
        return cls(key.key_id(), key.to_pem().decode("ascii"))

    @property
    def sm2_public_key(self) -> SM2PublicKey:
        return _public_key(self.public_key, "public_key")

    @classmethod
    def from_dict(cls, data: Any) -> LogKey:
        """Parse, checking that ``key_id`` is the published key's own id."""
        f = _fields(data, "", ("key_id", "public_key"))
        key_id = f.key_id("key_id")
        public_key = _public_key(f.string("public_key"), "public_key")
        if public_key.key_id() != key_id:
            raise RecordFormatError(
                f"the published key's id is {public_key.key_id()}, not {key_id}", path="key_id"
            )
        return cls(key_id, f.string("public_key"))


@dataclass(frozen=True, slots=True)
class PromiseBody:
    """The log's promise for an entry: verify it with the log key as docs/bundle-v1.md
    ("Promises") says."""

    leaf_hash: str
    index: int
    timestamp: int
    log_key_id: str
    batch_first_index: int = field(
        metadata={"description": "First index of the append batch signed."}
    )
    batch_size: int = field(metadata={"description": "Number of entries in that batch."})
    batch_proof: list[str] = field(
        metadata={
            "description": "RFC 9162 inclusion proof (hex) of the leaf at index - "
            "batch_first_index in the batch's tree; its root is the signed batch_root."
        }
    )
    signature: str = field(
        metadata={
            "description": 'Base64 DER SM2 signature over RFC 8785 of {"kind": '
            '"shancheng.promise-batch.v1", "first_index", "size", "batch_root", '
            '"timestamp", "log_key_id"}.'
        }
    )

    @classmethod
    def of(cls, promise: Promise) -> PromiseBody:
        return cls(**promise.to_dict())

    @property
    def promise(self) -> Promise:
        """The ledger's promise (checked on parsing, so this does not raise)."""
        return Promise.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaf_hash": self.leaf_hash,
            "index": self.index,
            "timestamp": self.timestamp,
            "log_key_id": self.log_key_id,
            "batch_first_index": self.batch_first_index,
            "batch_size": self.batch_size,
            "batch_proof": list(self.batch_proof),
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> PromiseBody:
        return cls.of(Promise.from_dict(data, path=path))


@dataclass(frozen=True, slots=True)
class Appended:
    index: int
    leaf_hash: str
    promise: PromiseBody

    @property
    def leaf_hash_bytes(self) -> bytes:
        return bytes.fromhex(self.leaf_hash)

    @property
    def signed_promise(self) -> Promise:
        """The log's promise to integrate the record, to verify with its key."""
        return self.promise.promise

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "leaf_hash": self.leaf_hash, "promise": self.promise.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Appended:
        f = _fields(data, path, ("index", "leaf_hash", "promise"))
        return cls(
            index=f.integer("index"),
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE).hex(),
            promise=PromiseBody.from_dict(f.raw("promise"), path=f.path("promise")),
        )


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    leaf_hash: str
    record: dict[str, Any] = field(metadata={"description": "The signed record as stored."})
    public_key: str = field(metadata={"description": "The actor's public key PEM, as accepted."})
    promise: PromiseBody

    @property
    def leaf_hash_bytes(self) -> bytes:
        return bytes.fromhex(self.leaf_hash)

    @property
    def signed_record(self) -> SignedRecord:
        return SignedRecord.from_dict(self.record, path="record")

    @property
    def actor_key(self) -> SM2PublicKey:
        return _public_key(self.public_key, "public_key")

    @property
    def signed_promise(self) -> Promise:
        return self.promise.promise

    @classmethod
    def from_dict(cls, data: Any) -> Entry:
        f = _fields(data, "", ("index", "leaf_hash", "record", "public_key", "promise"))
        SignedRecord.from_dict(f.raw("record"), path="record")
        public_key = f.string("public_key")
        _public_key(public_key, "public_key")
        return cls(
            index=f.integer("index"),
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE).hex(),
            record=f.raw("record"),
            public_key=public_key,
            promise=PromiseBody.from_dict(f.raw("promise"), path="promise"),
        )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str] = field(metadata={"description": "RFC 9162 audit path, leaf to root, hex."})

    @property
    def leaf_hash_bytes(self) -> bytes:
        return bytes.fromhex(self.leaf_hash)

    @property
    def hash_bytes(self) -> tuple[bytes, ...]:
        return _hex_bytes(self.hashes)

    def verify(self, root: bytes) -> None:
        """Raise :class:`ledger.merkle.ProofError` unless the path leads to ``root``
        (take it from a verified checkpoint of ``tree_size``)."""
        verify_inclusion(self.leaf_hash_bytes, self.index, self.tree_size, self.hash_bytes, root)

    @classmethod
    def from_dict(cls, data: Any) -> InclusionProof:
        f = _fields(data, "", ("index", "tree_size", "leaf_hash", "hashes"))
        return cls(
            index=f.integer("index"),
            tree_size=f.integer("tree_size", minimum=1),
            leaf_hash=f.hex_bytes("leaf_hash", size=DIGEST_SIZE).hex(),
            hashes=_hashes(f, "hashes"),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    hashes: list[str] = field(metadata={"description": "RFC 9162 consistency proof, hex."})

    @property
    def hash_bytes(self) -> tuple[bytes, ...]:
        return _hex_bytes(self.hashes)

    def verify(self, first_root: bytes, second_root: bytes) -> None:
        """Raise :class:`ledger.merkle.ProofError` unless the tree (``first``,
        ``first_root``) is a prefix of (``second``, ``second_root``)."""
        verify_consistency(self.first, self.second, first_root, second_root, self.hash_bytes)

    @classmethod
    def from_dict(cls, data: Any) -> ConsistencyProof:
        f = _fields(data, "", ("first", "second", "hashes"))
        return cls(f.integer("first"), f.integer("second"), _hashes(f, "hashes"))


@dataclass(frozen=True, slots=True)
class Anchor:
    tree_size: int
    root: str
    state: str = field(metadata={"description": "pending, sent, anchored (mined) or final."})
    chain_id: int
    registry_address: str
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None

    @property
    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root)

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Anchor:
        f = _fields(data, path, ("tree_size", "root", "state", "chain_id", "registry_address"))
        o = JSONObject(data, path)
        return cls(
            tree_size=f.integer("tree_size"),
            root=f.hex_bytes("root", size=DIGEST_SIZE).hex(),
            state=f.string("state"),
            chain_id=f.integer("chain_id"),
            registry_address=f.string("registry_address"),
            tx_hash=o.opt_text("tx_hash"),
            block_number=o.opt_integer("block_number"),
            block_hash=o.opt_text("block_hash"),
        )
