"""A provider-held delivery, defined once for the exchange, the provider agent and the buyer.

On a paid order of a listing in provider custody, the provider's agent cuts
what was bought (the whole dataset, or rows ``[offset, offset + count)``),
encrypts it with a fresh SM4 key (:func:`ledger.sm4.encrypt_stream`, associated
data :func:`deliverable_aad`), uploads only the ciphertext, and signs a
``delivery.issued`` record whose payload is a :class:`ProviderDelivery`: what
was delivered (plaintext SM3 and size, ciphertext SM3 and size, the rows and
their range proof against the listing version's row root) and the content key
SM2-encrypted to the buyer's registered key (:func:`ledger.envelope.wrap_key`).

The exchange checks the payload against the order and the listing version
(it cannot check the plaintext: it never sees it); the buyer checks the
provider's signature, the ciphertext, the decryption, and the plaintext
against what the provider signed for the listing version (whole dataset:
plaintext SM3 = the version's content digest; rows: the range proof against
the version's row root and row count).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

from ledger.protocol.reader import HEX64, JSONObject
from ledger.records import RecordFormatError, canonical_json

__all__ = [
    "DELIVERABLE_KIND",
    "DELIVERY_ISSUED",
    "ProviderDelivery",
    "RangeProof",
    "RowRange",
    "deliverable_aad",
]

DELIVERY_ISSUED: Final = "delivery.issued"
DELIVERABLE_KIND: Final = "shancheng.deliverable.v1"

_MAX_PROOF_NODES: Final = 128  # 2 × 64 levels: any row range of a tree below 2^64 rows
_MAX_WRAPPED_KEY: Final = 512  # base64 of an SM2 ciphertext of a 16-byte key (~150 bytes)


def deliverable_aad(order_id: str, listing_id: str, version: int) -> bytes:
    """The associated data sealed into every chunk of one order's deliverable: a
    ciphertext made for one order never decrypts as another's."""
    return canonical_json(
        {
            "kind": DELIVERABLE_KIND,
            "order_id": order_id,
            "listing_id": listing_id,
            "version": version,
        }
    )


@dataclass(frozen=True, slots=True)
class RowRange:
    """Rows ``[offset, offset + count)`` of the dataset, ``count >= 1``."""

    offset: int
    count: int

    @classmethod
    def from_dict(cls, data: Any, where: str = "rows") -> RowRange:
        o = JSONObject(data, where)
        return cls(o.integer("offset"), o.integer("count", minimum=1))

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "count": self.count}


@dataclass(frozen=True, slots=True)
class RangeProof:
    """The slice's range proof (:func:`ledger.merkle.range_proof` node hashes, lowercase
    hex, in :func:`ledger.merkle.range_plan` order) against ``row_root`` of a
    ``tree_size``-row dataset."""

    tree_size: int
    row_root: str
    proof: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str = "range_proof") -> RangeProof:
        o = JSONObject(data, where)
        proof = o.strings("proof")
        if len(proof) > _MAX_PROOF_NODES:
            raise RecordFormatError(f"at most {_MAX_PROOF_NODES} nodes", path=o.path("proof"))
        for i, node in enumerate(proof):
            if not HEX64.fullmatch(node):
                raise RecordFormatError(
                    "expected 64 lowercase hex digits", path=f"{o.path('proof')}[{i}]"
                )
        return cls(o.integer("tree_size", minimum=1), o.hex64("row_root"), proof)

    def to_dict(self) -> dict[str, Any]:
        return {"tree_size": self.tree_size, "row_root": self.row_root, "proof": list(self.proof)}


@dataclass(frozen=True, slots=True)
class ProviderDelivery:
    """The payload of a provider-signed ``delivery.issued`` record.

    ``rows`` and ``range_proof`` are both present (a quantity order: the rows
    the buyer's quote named) or both ``None`` (the whole dataset).
    ``wrapped_key`` is the base64 SM2 envelope of the 16-byte SM4 key.
    """

    order_id: str
    listing_id: str
    version: int
    buyer: str
    format: str
    rows: RowRange | None
    range_proof: RangeProof | None
    plaintext_sm3: str
    plaintext_size: int
    ciphertext_sm3: str
    ciphertext_size: int
    wrapped_key: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "payload") -> ProviderDelivery:
        """Parse strictly; :class:`ledger.records.RecordFormatError` naming the field."""
        o = JSONObject(data, where)
        extra = sorted(set(o.data) - _FIELDS)
        if extra:
            raise RecordFormatError("unknown field", path=o.path(extra[0]))
        raw_rows, raw_proof = o.raw("rows"), o.raw("range_proof")
        rows = None if raw_rows is None else RowRange.from_dict(raw_rows, o.path("rows"))
        proof = (
            None if raw_proof is None else RangeProof.from_dict(raw_proof, o.path("range_proof"))
        )
        if (rows is None) != (proof is None):
            raise RecordFormatError("rows and range_proof come together (or neither)", path=where)
        wrapped = o.text("wrapped_key")
        if not 0 < len(wrapped) <= _MAX_WRAPPED_KEY:
            raise RecordFormatError(
                f"base64, at most {_MAX_WRAPPED_KEY} characters", path=o.path("wrapped_key")
            )
        try:
            base64.b64decode(wrapped, validate=True)
        except (binascii.Error, ValueError):
            raise RecordFormatError("not base64", path=o.path("wrapped_key")) from None
        fmt = o.text("format")
        if not 0 < len(fmt) <= 32:
            raise RecordFormatError("1 to 32 characters", path=o.path("format"))
        return cls(
            order_id=o.text("order_id"),
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            buyer=o.hex64("buyer"),
            format=fmt,
            rows=rows,
            range_proof=proof,
            plaintext_sm3=o.hex64("plaintext_sm3"),
            plaintext_size=o.integer("plaintext_size"),
            ciphertext_sm3=o.hex64("ciphertext_sm3"),
            ciphertext_size=o.integer("ciphertext_size", minimum=1),
            wrapped_key=wrapped,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "listing_id": self.listing_id,
            "version": self.version,
            "buyer": self.buyer,
            "format": self.format,
            "rows": None if self.rows is None else self.rows.to_dict(),
            "range_proof": None if self.range_proof is None else self.range_proof.to_dict(),
            "plaintext_sm3": self.plaintext_sm3,
            "plaintext_size": self.plaintext_size,
            "ciphertext_sm3": self.ciphertext_sm3,
            "ciphertext_size": self.ciphertext_size,
            "wrapped_key": self.wrapped_key,
        }

    def wrapped_key_bytes(self) -> bytes:
        """The SM2 ciphertext of the content key (for :func:`ledger.envelope.unwrap_key`)."""
        return base64.b64decode(self.wrapped_key, validate=True)


_FIELDS: Final = frozenset(ProviderDelivery.__dataclass_fields__)
