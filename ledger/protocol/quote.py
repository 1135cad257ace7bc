"""The quote: the exchange's signed, expiring offer of one price for one buyer,
defined once for the exchange (which issues and checks it) and the SDK (which
checks it and hands it back in ``order.placed``).

A :class:`Quote` says "buyer ``buyer_key_id`` may buy version
``listing_version`` (content ``content_digest``) of listing ``listing_id``
on these terms for ``amount`` fen until ``expires_at``". The exchange signs it
with its log key (SM2).

Signed bytes: RFC 8785 of every field but the signature, plus the
domain-separation ``kind`` (so a quote signature can never pass for a promise
or checkpoint, nor they for a quote)::

    {"kind": "shancheng.quote.v1", "quote_id": hex(16 bytes),
     "listing_id": str, "listing_version": int, "content_digest": hex(32 bytes),
     "buyer_key_id": hex, "terms": {"rows": int|null, "row_offset": int,
     "periods": int|null, "licence": str}, "amount": int, "currency": "CNY",
     "issued_at": ms, "expires_at": ms, "log_key_id": hex}

``policy_digest`` (hex SM3 of the listing version's usage policy,
:meth:`ledger.protocol.policy.Policy.digest`) follows ``log_key_id`` when the
quote carries it (every quote issued since usage policies; older quotes have
no such field and still verify): the buyer's ``order.placed`` embeds the quote,
so the signed order names the exact policy it agrees to.

``terms.row_offset`` (the first row bought) is there exactly when ``rows`` is
(quotes issued before it existed have neither it nor a way to carry it, and
still verify). A computation order's terms add ``"computation": true, "queries":
int|null`` (present only then: quotes for data keep their encoding). An
assessment order's terms (an assessor's, at 0 fen, docs/quality.md) add
``"purpose": "assessment"`` (present only then).

The JSON form (:meth:`Quote.to_dict`) is the same object without ``kind``,
plus ``"signature"`` (standard base64 DER). Parsing is strict both ways: an
unknown or missing field is refused rather than dropped, since either would
change the signed bytes. Malformed values raise
:class:`ledger.records.RecordFormatError` naming the field; a signature that
does not verify raises :class:`ledger.errors.InvalidSignature`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import InvalidSignature
from ledger.protocol.limits import MAX_AMOUNT_FEN, MAX_QUERIES
from ledger.protocol.reader import JSONObject
from ledger.records import (
    Fields,
    RecordFormatError,
    canonical_json,
    check_int,
    check_key_id,
    check_signature_bytes,
    encode_base64,
)
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "CURRENCY",
    "MAX_LICENCE_LENGTH",
    "MAX_LISTING_ID_LENGTH",
    "MAX_QUOTE_TTL_MS",
    "PURPOSES",
    "QUOTE_KIND",
    "Quote",
    "QuoteTerms",
]

QUOTE_KIND: Final = "shancheng.quote.v1"
CURRENCY: Final = "CNY"
MAX_QUOTE_TTL_MS: Final = 7 * 24 * 60 * 60 * 1000
MAX_LISTING_ID_LENGTH: Final = 128
MAX_LICENCE_LENGTH: Final = 200

_QUOTE_ID: Final = re.compile(r"[0-9a-f]{32}")
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_FIELDS: Final = (
    "quote_id",
    "listing_id",
    "listing_version",
    "content_digest",
    "buyer_key_id",
    "terms",
    "amount",
    "currency",
    "issued_at",
    "expires_at",
    "log_key_id",
    "signature",
)
_TERMS_FIELDS: Final = ("rows", "periods", "licence")
_ROW_TERMS_FIELDS: Final = ("rows", "row_offset", "periods", "licence")
_COMPUTATION_FIELDS: Final = ("computation", "queries")
_PURPOSE_FIELDS: Final = ("purpose",)
PURPOSES: Final = ("assessment",)
"""Purposes a quote's terms may name: ``assessment`` (an assessor's zero-price order)."""


def _check_optional_count(value: Any, path: str) -> int | None:
    return None if value is None else check_int(value, path, minimum=1)


def _check_text(value: Any, path: str, maximum: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= maximum:
        raise RecordFormatError(f"expected a string of 1 to {maximum} characters", path=path)
    return value


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """What is bought: ``rows`` from ``row_offset`` (tiered pricing), ``periods``
    (subscription), licence; or, with ``computation``, queries on the data
    (``queries``: how many, for an offer priced per query). Validated on
    construction."""

    rows: int | None
    periods: int | None
    licence: str
    row_offset: int | None = None
    computation: bool = False
    queries: int | None = None
    purpose: str | None = None

    def __post_init__(self) -> None:
        _check_optional_count(self.rows, "terms.rows")
        _check_optional_count(self.periods, "terms.periods")
        _check_text(self.licence, "terms.licence", MAX_LICENCE_LENGTH)
        if self.row_offset is not None:
            if self.rows is None:
                raise RecordFormatError("only together with rows", path="terms.row_offset")
            check_int(self.row_offset, "terms.row_offset")
        if not isinstance(self.computation, bool):
            raise RecordFormatError("expected true", path="terms.computation")
        _check_optional_count(self.queries, "terms.queries")
        if self.queries is not None and not (self.computation and self.queries <= MAX_QUERIES):
            raise RecordFormatError(
                f"1 to {MAX_QUERIES}, only on a computation order", path="terms.queries"
            )
        if self.purpose is not None and (
            self.purpose not in PURPOSES
            or self.computation
            or self.rows is not None
            or self.periods is not None
        ):
            raise RecordFormatError(
                f"one of {', '.join(PURPOSES)}, on terms without rows, periods or computation",
                path="terms.purpose",
            )

    def to_dict(self) -> dict[str, Any]:
        terms: dict[str, Any] = {"rows": self.rows}
        if self.row_offset is not None:
            terms["row_offset"] = self.row_offset
        terms |= {"periods": self.periods, "licence": self.licence}
        if self.computation:
            terms |= {"computation": True, "queries": self.queries}
        if self.purpose is not None:
            terms["purpose"] = self.purpose
        return terms

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "terms") -> QuoteTerms:
        with_offset = isinstance(data, dict) and "row_offset" in data
        computing = isinstance(data, dict) and "computation" in data
        purposed = isinstance(data, dict) and "purpose" in data
        keys: tuple[str, ...] = _ROW_TERMS_FIELDS if with_offset else _TERMS_FIELDS
        keys += _COMPUTATION_FIELDS if computing else ()
        keys += _PURPOSE_FIELDS if purposed else ()
        f = Fields(data, path, keys)
        if computing and f.raw("computation") is not True:
            raise RecordFormatError("true, or no such field", path=f.path("computation"))
        return cls(
            rows=f.raw("rows"),
            periods=f.raw("periods"),
            licence=f.raw("licence"),
            row_offset=f.raw("row_offset") if with_offset else None,
            computation=computing,
            queries=f.raw("queries") if computing else None,
            purpose=f.raw("purpose") if purposed else None,
        )


@dataclass(frozen=True, slots=True)
class Quote:
    """A signed quote; see the module docstring. Validated on construction.
    Hand it back unchanged: :meth:`to_dict` is the quote exactly as issued."""

    quote_id: str
    listing_id: str
    listing_version: int
    content_digest: str
    buyer_key_id: str
    terms: QuoteTerms
    amount: int
    currency: str
    issued_at: int
    expires_at: int
    log_key_id: str
    signature: bytes
    policy_digest: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.quote_id, str) or not _QUOTE_ID.fullmatch(self.quote_id):
            raise RecordFormatError("expected 32 lowercase hex digits", path="quote_id")
        _check_text(self.listing_id, "listing_id", MAX_LISTING_ID_LENGTH)
        check_int(self.listing_version, "listing_version", minimum=1)
        if not isinstance(self.content_digest, str) or not _DIGEST.fullmatch(self.content_digest):
            raise RecordFormatError(
                "expected an SM3 digest (64 lowercase hex)", path="content_digest"
            )
        check_key_id(self.buyer_key_id, "buyer_key_id")
        if not isinstance(self.terms, QuoteTerms):
            raise RecordFormatError("expected QuoteTerms", path="terms")
        check_int(self.amount, "amount")
        if self.amount > MAX_AMOUNT_FEN:
            raise RecordFormatError(f"exceeds {MAX_AMOUNT_FEN} fen", path="amount")
        if self.currency != CURRENCY:
            raise RecordFormatError(f"only {CURRENCY!r} is supported", path="currency")
        check_int(self.issued_at, "issued_at")
        check_int(self.expires_at, "expires_at")
        if not self.issued_at < self.expires_at <= self.issued_at + MAX_QUOTE_TTL_MS:
            raise RecordFormatError(
                f"must be after issued_at and within {MAX_QUOTE_TTL_MS} ms of it",
                path="expires_at",
            )
        check_key_id(self.log_key_id, "log_key_id")
        check_signature_bytes(self.signature, "signature")
        if self.policy_digest is not None and (
            not isinstance(self.policy_digest, str) or not _DIGEST.fullmatch(self.policy_digest)
        ):
            raise RecordFormatError(
                "expected an SM3 digest (64 lowercase hex)", path="policy_digest"
            )

    def _unsigned(self) -> dict[str, Any]:
        unsigned = {
            "quote_id": self.quote_id,
            "listing_id": self.listing_id,
            "listing_version": self.listing_version,
            "content_digest": self.content_digest,
            "buyer_key_id": self.buyer_key_id,
            "terms": self.terms.to_dict(),
            "amount": self.amount,
            "currency": self.currency,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "log_key_id": self.log_key_id,
        }
        if self.policy_digest is not None:
            unsigned["policy_digest"] = self.policy_digest
        return unsigned

    def signed_bytes(self) -> bytes:
        """The RFC 8785 bytes the exchange signs (with ``kind``)."""
        return canonical_json({"kind": QUOTE_KIND, **self._unsigned()})

    def sign(self, log_key: SM2PrivateKey) -> Quote:
        """This quote signed by ``log_key``, the key its ``log_key_id`` names
        (else ``ValueError``: nobody could verify the result)."""
        if log_key.key_id() != self.log_key_id:
            raise ValueError(f"the quote names log key {self.log_key_id}, not {log_key.key_id()}")
        return dataclasses.replace(self, signature=log_key.sign(self.signed_bytes()))

    def verify(self, log_key: SM2PublicKey) -> None:
        """Raise :class:`ledger.errors.InvalidSignature` unless ``log_key``, the key
        ``log_key_id`` names, signed this quote."""
        if log_key.key_id() != self.log_key_id:
            raise InvalidSignature(
                f"the quote names log key {self.log_key_id}, not {log_key.key_id()}"
            )
        log_key.verify(self.signature, self.signed_bytes())

    def to_dict(self) -> dict[str, Any]:
        return {**self._unsigned(), "signature": encode_base64(self.signature)}

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "quote") -> Quote:
        """Parse :meth:`to_dict` output strictly."""
        with_policy = isinstance(data, dict) and "policy_digest" in data
        f = Fields(data, path, _FIELDS + (("policy_digest",) if with_policy else ()))
        return cls(
            quote_id=f.raw("quote_id"),
            listing_id=f.raw("listing_id"),
            listing_version=f.raw("listing_version"),
            content_digest=f.raw("content_digest"),
            buyer_key_id=f.raw("buyer_key_id"),
            terms=QuoteTerms.from_dict(f.raw("terms"), path=f.path("terms")),
            amount=f.raw("amount"),
            currency=f.raw("currency"),
            issued_at=f.raw("issued_at"),
            expires_at=f.raw("expires_at"),
            log_key_id=f.raw("log_key_id"),
            signature=f.base64_bytes("signature"),
            policy_digest=f.raw("policy_digest") if with_policy else None,
        )

    @classmethod
    def from_issued(cls, data: Any) -> Quote:
        """``{"quote": …}`` as ``POST /listings/{id}/quotes`` answers."""
        return cls.from_dict(JSONObject(data, "").raw("quote"))
