"""Quotes: the exchange's signed, expiring offer of one price for one buyer.

A :class:`Quote` says "buyer ``buyer_key_id`` may buy version
``listing_version`` (content ``content_digest``) of listing ``listing_id``
on these terms for ``amount`` fen until ``expires_at``". The exchange signs it
with its log key (SM2); an order must present it, and the order service
checks it with :func:`verify_quote` against the order's buyer, listing,
version and amount — so a price cannot be altered by the client, reused by
another buyer or for another version, or used after it expires.

Signed bytes: RFC 8785 of every field but the signature, plus the
domain-separation ``kind`` (so a quote signature can never pass for a promise
or checkpoint, nor they for a quote)::

    {"kind": "shancheng.quote.v1", "quote_id": hex(16 bytes),
     "listing_id": str, "listing_version": int, "content_digest": hex(32 bytes),
     "buyer_key_id": hex, "terms": {"rows": int|null, "row_offset": int,
     "periods": int|null, "licence": str}, "amount": int, "currency": "CNY",
     "issued_at": ms, "expires_at": ms, "log_key_id": hex}

``terms.row_offset`` (the first row bought) is there exactly when ``rows`` is
(quotes issued before it existed have neither it nor a way to carry it, and
still verify). A computation order's terms add ``"computation": true, "queries":
int|null`` (present only then: quotes for data keep their encoding).

The JSON form (:meth:`Quote.to_dict`) is the same object without ``kind``,
plus ``"signature"`` (standard base64 DER).

Errors are :class:`exchange.errors.ExchangeError` subclasses, so the API's
one handler renders them: :class:`QuoteFormatError` (422 ``invalid_quote``),
:class:`QuoteSignatureError` (422 ``invalid_quote_signature``; also a
:class:`ledger.errors.InvalidSignature`), :class:`QuoteMismatchError`
(422 ``quote_mismatch``, with ``field``/``expected``/``actual``) and
:class:`QuoteExpiredError` (409 ``quote_expired``).

The exchange verifies its own signature on a quote once per process: a quote
it issued, or whose signature it has verified, is remembered (a bounded cache
of the digests of its signed bytes and signature, :class:`_KnownQuotes`), so
placing an order costs no SM2 verification for the quote in the process that
quoted it. Any other bytes miss the cache and are verified.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from exchange.errors import ExchangeError
from exchange.pricing import MAX_AMOUNT_FEN, MAX_QUERIES
from ledger.errors import InvalidSignature
from ledger.records import (
    Fields,
    RecordFormatError,
    canonical_json,
    check_int,
    check_key_id,
    check_signature_bytes,
    encode_base64,
    parse_json_object,
)
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "CURRENCY",
    "DEFAULT_QUOTE_TTL_MS",
    "MAX_QUOTE_TTL_MS",
    "QUOTE_KIND",
    "Quote",
    "QuoteExpiredError",
    "QuoteFormatError",
    "QuoteMismatchError",
    "QuoteSignatureError",
    "QuoteTerms",
    "issue_quote",
    "verify_quote",
]

QUOTE_KIND: Final = "shancheng.quote.v1"
CURRENCY: Final = "CNY"
DEFAULT_QUOTE_TTL_MS: Final = 15 * 60 * 1000
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


class QuoteFormatError(ExchangeError):
    """A quote is malformed (missing/unknown field, wrong type, bad encoding)."""

    status = 422
    code = "invalid_quote"


class QuoteSignatureError(ExchangeError, InvalidSignature):
    """The quote was not signed by this exchange's log key, or was altered."""

    status = 422
    code = "invalid_quote_signature"


class QuoteMismatchError(ExchangeError):
    """A genuine quote for something other than this order: ``field`` differs."""

    status = 422
    code = "quote_mismatch"

    def __init__(self, field: str, expected: object, actual: object) -> None:
        self.field = field
        self.expected = expected
        self.actual = actual
        super().__init__(f"the quote's {field} is {actual!r}, the order's is {expected!r}")


class QuoteExpiredError(ExchangeError):
    """The quote's ``expires_at`` has passed: ask for a new quote."""

    status = 409
    code = "quote_expired"

    def __init__(self, expires_at: int, now: int) -> None:
        self.expires_at = expires_at
        self.now = now
        super().__init__(f"the quote expired at {expires_at} ms (now {now} ms); request a new one")


def _format(check: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return check(*args, **kwargs)
    except RecordFormatError as exc:
        raise QuoteFormatError(str(exc)) from None


def _check_optional_count(value: Any, path: str) -> int | None:
    if value is None:
        return None
    count: int = _format(check_int, value, path, minimum=1)
    return count


def _check_text(value: Any, path: str, maximum: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= maximum:
        raise QuoteFormatError(f"{path}: expected a string of 1 to {maximum} characters")
    return value


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """What is bought: ``rows`` from ``row_offset`` (tiered pricing), ``periods``
    (subscription), licence; or, with ``computation``, queries on the data
    (``queries``: how many, for an offer priced per query)."""

    rows: int | None
    periods: int | None
    licence: str
    row_offset: int | None = None
    computation: bool = False
    queries: int | None = None

    def __post_init__(self) -> None:
        _check_optional_count(self.rows, "terms.rows")
        _check_optional_count(self.periods, "terms.periods")
        _check_text(self.licence, "terms.licence", MAX_LICENCE_LENGTH)
        if self.row_offset is not None:
            if self.rows is None:
                raise QuoteFormatError("terms.row_offset: only together with rows")
            _format(check_int, self.row_offset, "terms.row_offset")
        if not isinstance(self.computation, bool):
            raise QuoteFormatError("terms.computation: expected true")
        _check_optional_count(self.queries, "terms.queries")
        if self.queries is not None and not (self.computation and self.queries <= MAX_QUERIES):
            raise QuoteFormatError(
                f"terms.queries: 1 to {MAX_QUERIES}, only on a computation order"
            )

    def to_dict(self) -> dict[str, Any]:
        terms: dict[str, Any] = {"rows": self.rows}
        if self.row_offset is not None:
            terms["row_offset"] = self.row_offset
        terms |= {"periods": self.periods, "licence": self.licence}
        if self.computation:
            terms |= {"computation": True, "queries": self.queries}
        return terms

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "terms") -> QuoteTerms:
        with_offset = isinstance(data, dict) and "row_offset" in data
        computing = isinstance(data, dict) and "computation" in data
        keys: tuple[str, ...] = _ROW_TERMS_FIELDS if with_offset else _TERMS_FIELDS
        keys += _COMPUTATION_FIELDS if computing else ()
        f = _format(Fields, data, path, keys)
        if computing and f.raw("computation") is not True:
            raise QuoteFormatError(f"{f.path('computation')}: true, or no such field")
        return cls(
            rows=f.raw("rows"),
            periods=f.raw("periods"),
            licence=f.raw("licence"),
            row_offset=f.raw("row_offset") if with_offset else None,
            computation=computing,
            queries=f.raw("queries") if computing else None,
        )


@dataclass(frozen=True, slots=True)
class Quote:
    """A signed quote; see the module docstring. Validated on construction
    (raises :class:`QuoteFormatError`)."""

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

    def __post_init__(self) -> None:
        if not isinstance(self.quote_id, str) or not _QUOTE_ID.fullmatch(self.quote_id):
            raise QuoteFormatError("quote_id: expected 32 lowercase hex digits")
        _check_text(self.listing_id, "listing_id", MAX_LISTING_ID_LENGTH)
        _format(check_int, self.listing_version, "listing_version", minimum=1)
        if not isinstance(self.content_digest, str) or not _DIGEST.fullmatch(self.content_digest):
            raise QuoteFormatError("content_digest: expected an SM3 digest (64 lowercase hex)")
        _format(check_key_id, self.buyer_key_id, "buyer_key_id")
        if not isinstance(self.terms, QuoteTerms):
            raise QuoteFormatError("terms: expected QuoteTerms")
        _format(check_int, self.amount, "amount")
        if self.amount > MAX_AMOUNT_FEN:
            raise QuoteFormatError(f"amount: exceeds {MAX_AMOUNT_FEN} fen")
        if self.currency != CURRENCY:
            raise QuoteFormatError(f"currency: only {CURRENCY!r} is supported")
        _format(check_int, self.issued_at, "issued_at")
        _format(check_int, self.expires_at, "expires_at")
        if not self.issued_at < self.expires_at <= self.issued_at + MAX_QUOTE_TTL_MS:
            raise QuoteFormatError(
                f"expires_at must be after issued_at and within {MAX_QUOTE_TTL_MS} ms of it"
            )
        _format(check_key_id, self.log_key_id, "log_key_id")
        _format(check_signature_bytes, self.signature, "signature")

    def _unsigned(self) -> dict[str, Any]:
        return {
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

    def signed_bytes(self) -> bytes:
        """The RFC 8785 bytes the exchange signs (with ``kind``)."""
        return canonical_json({"kind": QUOTE_KIND, **self._unsigned()})

    def to_dict(self) -> dict[str, Any]:
        return {**self._unsigned(), "signature": encode_base64(self.signature)}

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Quote:
        """Parse :meth:`to_dict` output; raises :class:`QuoteFormatError`."""
        f = _format(Fields, data, path, _FIELDS)
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
            signature=_format(f.base64_bytes, "signature"),
        )

    def to_json(self) -> str:
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_json(cls, data: str | bytes) -> Quote:
        return cls.from_dict(_format(parse_json_object, data, "quote"))


class _KnownQuotes:
    """Digests of quotes (signed bytes + signature) this process signed or verified
    with its log key: the least recently used are forgotten beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._digests: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(quote: Quote, signed_bytes: bytes) -> bytes:
        return hashlib.sha256(signed_bytes + b"\x00" + quote.signature).digest()

    def add(self, digest: bytes) -> None:
        with self._lock:
            self._digests[digest] = None
            self._digests.move_to_end(digest)
            while len(self._digests) > self._capacity:
                self._digests.popitem(last=False)

    def __contains__(self, digest: bytes) -> bool:
        with self._lock:
            return digest in self._digests


_KNOWN = _KnownQuotes(capacity=100_000)


def issue_quote(
    log_key: SM2PrivateKey,
    *,
    listing_id: str,
    listing_version: int,
    content_digest: str,
    buyer_key_id: str,
    terms: QuoteTerms,
    amount: int,
    now: int,
    ttl_ms: int = DEFAULT_QUOTE_TTL_MS,
) -> Quote:
    """Sign a fresh quote (random ``quote_id``) valid from ``now`` for ``ttl_ms``.

    The caller computes ``amount`` with :func:`exchange.pricing.price` from
    the listing's pricing and ``terms``. Raises :class:`QuoteFormatError` for
    out-of-range values.
    """
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 1:
        raise QuoteFormatError("ttl_ms must be a positive integer")
    fields: dict[str, Any] = {
        "quote_id": secrets.token_hex(16),
        "listing_id": listing_id,
        "listing_version": listing_version,
        "content_digest": content_digest,
        "buyer_key_id": buyer_key_id,
        "terms": terms,
        "amount": amount,
        "currency": CURRENCY,
        "issued_at": now,
        "expires_at": now + ttl_ms,
        "log_key_id": log_key.key_id(),
    }
    unsigned = Quote(**fields, signature=b"\x00")  # validates every field first
    signed_bytes = unsigned.signed_bytes()
    quote = Quote(**fields, signature=log_key.sign(signed_bytes))
    _KNOWN.add(_KnownQuotes.digest(quote, signed_bytes))
    return quote


def verify_quote(
    log_pub: SM2PublicKey,
    quote: Quote,
    *,
    now: int,
    buyer_key_id: str,
    listing_id: str,
    version: int,
    amount: int,
    content_digest: str | None = None,
    terms: QuoteTerms | None = None,
) -> None:
    """Check that ``quote`` is the exchange's, for this order, and unexpired.

    In this order: signed by ``log_pub`` (else :class:`QuoteSignatureError`),
    matches the order's buyer, listing, version, amount and — when given —
    content digest and terms (else :class:`QuoteMismatchError` naming the
    first differing field), and ``now < expires_at``
    (else :class:`QuoteExpiredError`). Returns ``None``; never a bool.
    """
    if quote.log_key_id != log_pub.key_id():
        raise QuoteSignatureError(
            f"the quote names log key {quote.log_key_id}, not this exchange's {log_pub.key_id()}"
        )
    signed_bytes = quote.signed_bytes()
    digest = _KnownQuotes.digest(quote, signed_bytes)
    if digest not in _KNOWN:  # (the log key id in the signed bytes is log_pub's)
        try:
            log_pub.verify(quote.signature, signed_bytes)
        except InvalidSignature:
            raise QuoteSignatureError("the quote's signature does not verify") from None
        _KNOWN.add(digest)
    expected: list[tuple[str, object, object]] = [
        ("buyer_key_id", buyer_key_id, quote.buyer_key_id),
        ("listing_id", listing_id, quote.listing_id),
        ("listing_version", version, quote.listing_version),
        ("amount", amount, quote.amount),
    ]
    if content_digest is not None:
        expected.append(("content_digest", content_digest, quote.content_digest))
    if terms is not None:
        expected.append(("terms", terms.to_dict(), quote.terms.to_dict()))
    for field, wanted, actual in expected:
        if wanted != actual or type(wanted) is not type(actual):
            raise QuoteMismatchError(field, wanted, actual)
    if now >= quote.expires_at:
        raise QuoteExpiredError(quote.expires_at, now)
