"""Receipt bundles, version 1: everything needed to prove one record against the chain.

A bundle is self-contained JSON (schema in ``docs/bundle-v1.md``)::

    {"version": 1,
     "record": <SignedRecord.to_dict()>,
     "actor_public_key": "<PEM>",
     "promise": <Promise.to_dict()>,
     "log_public_key": "<PEM>",
     "inclusion": {"index": int, "tree_size": int, "hashes": ["<hex>", ...]},
     "checkpoint": <Checkpoint.to_dict()>,
     "anchor": {"chain_id": int, "registry_address": "0x…", "tx_hash": "0x…",
                "block_number": int}}

This module only models and parses bundles; :func:`ledger.audit.verify_bundle`
checks them. Parsing is strict: unknown versions raise
:class:`UnsupportedBundleVersionError`, anything malformed
:class:`BundleFormatError` (both :class:`ledger.records.RecordFormatError`),
naming the path of the offending field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ledger.checkpoint import Checkpoint, Promise
from ledger.errors import KeyFormatError
from ledger.records import (
    Fields,
    RecordFormatError,
    SignedRecord,
    canonical_json,
    check_int,
    parse_json_object,
)
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import DIGEST_SIZE

__all__ = [
    "BUNDLE_VERSION",
    "AnchorRef",
    "Bundle",
    "BundleFormatError",
    "InclusionProof",
    "UnsupportedBundleVersionError",
]

BUNDLE_VERSION: Final = 1

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_TX_HASH: Final = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX_HASH: Final = re.compile(r"[0-9a-f]{64}")
_MAX_PROOF_NODES: Final = 64  # a tree of 2**53 leaves needs at most 53

_BUNDLE_FIELDS: Final = (
    "version",
    "record",
    "actor_public_key",
    "promise",
    "log_public_key",
    "inclusion",
    "checkpoint",
    "anchor",
)
_INCLUSION_FIELDS: Final = ("index", "tree_size", "hashes")
_ANCHOR_FIELDS: Final = ("chain_id", "registry_address", "tx_hash", "block_number")


class BundleFormatError(RecordFormatError):
    """A bundle is malformed (missing/unknown field, bad value, bad key PEM, …)."""


class UnsupportedBundleVersionError(BundleFormatError):
    """A bundle of a version this code does not know (``version`` is what it said)."""

    def __init__(self, version: object) -> None:
        self.version = version
        super().__init__(
            f"unsupported bundle version {version!r} (this verifier knows {BUNDLE_VERSION})",
            path="version",
        )


def _hex_hash(value: Any, path: str) -> bytes:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise BundleFormatError("expected a 32-byte hash as 64 lowercase hex digits", path=path)
    return bytes.fromhex(value)


def _rebased(exc: RecordFormatError) -> BundleFormatError:
    if isinstance(exc, BundleFormatError):
        return exc
    return BundleFormatError(exc.reason, path=exc.path)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An RFC 9162 inclusion proof of leaf ``index`` in the tree of ``tree_size``."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_int(self.index, "inclusion.index")
        check_int(self.tree_size, "inclusion.tree_size")
        object.__setattr__(self, "hashes", tuple(self.hashes))
        for i, node in enumerate(self.hashes):
            if not isinstance(node, bytes) or len(node) != DIGEST_SIZE:
                raise BundleFormatError("expected a 32-byte hash", path=f"inclusion.hashes[{i}]")

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "hashes": [h.hex() for h in self.hashes],
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "inclusion") -> InclusionProof:
        f = Fields(data, path, _INCLUSION_FIELDS)
        raw = f.raw("hashes")
        if not isinstance(raw, list):
            raise BundleFormatError("expected a list of hex hashes", path=f.path("hashes"))
        if len(raw) > _MAX_PROOF_NODES:
            raise BundleFormatError(
                f"{len(raw)} proof nodes (at most {_MAX_PROOF_NODES})", path=f.path("hashes")
            )
        nodes = [_hex_hash(h, f"{f.path('hashes')}[{i}]") for i, h in enumerate(raw)]
        return cls(f.integer("index"), f.integer("tree_size"), tuple(nodes))


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """Where the bundle says its checkpoint is anchored.

    ``registry_address`` is a ``0x``-prefixed 20-byte hex address in any case
    (compare with :meth:`same_registry`); ``tx_hash`` a ``0x`` 32-byte hex hash.
    """

    chain_id: int
    registry_address: str
    tx_hash: str
    block_number: int

    def __post_init__(self) -> None:
        check_int(self.chain_id, "anchor.chain_id", minimum=1)
        check_int(self.block_number, "anchor.block_number")
        if not isinstance(self.registry_address, str) or not _ADDRESS.fullmatch(
            self.registry_address
        ):
            raise BundleFormatError(
                "expected a 0x-prefixed 20-byte hex address", path="anchor.registry_address"
            )
        if not isinstance(self.tx_hash, str) or not _TX_HASH.fullmatch(self.tx_hash):
            raise BundleFormatError(
                "expected a 0x-prefixed 32-byte hex hash", path="anchor.tx_hash"
            )

    def same_registry(self, address: str) -> bool:
        return self.registry_address.lower() == address.lower()

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "registry_address": self.registry_address,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "anchor") -> AnchorRef:
        f = Fields(data, path, _ANCHOR_FIELDS)
        return cls(
            chain_id=f.integer("chain_id", minimum=1),
            registry_address=f.string("registry_address"),
            tx_hash=f.string("tx_hash"),
            block_number=f.integer("block_number"),
        )


def _public_key(f: Fields, key: str) -> SM2PublicKey:
    pem = f.string(key)
    try:
        return SM2PublicKey.from_pem(pem)
    except KeyFormatError as exc:
        raise BundleFormatError(f"not an SM2 public key PEM: {exc}", path=f.path(key)) from None


@dataclass(frozen=True, slots=True)
class Bundle:
    """A version 1 receipt bundle (see the module docstring)."""

    record: SignedRecord
    actor_public_key: SM2PublicKey
    promise: Promise
    log_public_key: SM2PublicKey
    inclusion: InclusionProof
    checkpoint: Checkpoint
    anchor: AnchorRef

    version: ClassVar[int] = BUNDLE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "record": self.record.to_dict(),
            "actor_public_key": self.actor_public_key.to_pem().decode("ascii"),
            "promise": self.promise.to_dict(),
            "log_public_key": self.log_public_key.to_pem().decode("ascii"),
            "inclusion": self.inclusion.to_dict(),
            "checkpoint": self.checkpoint.to_dict(),
            "anchor": self.anchor.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Bundle:
        """Parse strictly. Raises :class:`UnsupportedBundleVersionError` for any
        ``version`` but 1 and :class:`BundleFormatError` for anything malformed."""
        if not isinstance(data, dict):
            raise BundleFormatError(f"a bundle is a JSON object, not {type(data).__name__}")
        if "version" not in data:
            raise BundleFormatError("missing field version")
        version = data["version"]
        if type(version) is not int or version != BUNDLE_VERSION:
            raise UnsupportedBundleVersionError(version)
        try:
            f = Fields(data, "", _BUNDLE_FIELDS)
            return cls(
                record=SignedRecord.from_dict(f.raw("record"), path="record"),
                actor_public_key=_public_key(f, "actor_public_key"),
                promise=Promise.from_dict(f.raw("promise"), path="promise"),
                log_public_key=_public_key(f, "log_public_key"),
                inclusion=InclusionProof.from_dict(f.raw("inclusion")),
                checkpoint=Checkpoint.from_dict(f.raw("checkpoint"), path="checkpoint"),
                anchor=AnchorRef.from_dict(f.raw("anchor")),
            )
        except RecordFormatError as exc:
            raise _rebased(exc) from None

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical (RFC 8785) JSON, or indented for humans with ``indent``."""
        if indent is None:
            return canonical_json(self.to_dict()).decode("utf-8")
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes) -> Bundle:
        try:
            obj = parse_json_object(data, "bundle")
        except RecordFormatError as exc:
            raise _rebased(exc) from None
        return cls.from_dict(obj)
