"""Quotes on the exchange's side: issuing them, checking the one an order presents.

The quote itself (fields, JSON form, signed bytes, signature) is
:mod:`ledger.protocol.quote`, shared with the SDK. An order must present a
quote, and the order service checks it with :func:`verify_quote` against the
order's buyer, listing, version and amount — so a price cannot be altered by
the client, reused by another buyer or for another version, or used after it
expires.

Errors are :class:`exchange.errors.ExchangeError` subclasses, so the API's
one handler renders them: :class:`QuoteFormatError` (422 ``invalid_quote``;
:func:`parse_quote` and :func:`issue_quote` turn the protocol's
:class:`ledger.records.RecordFormatError` into it), :class:`QuoteSignatureError`
(422 ``invalid_quote_signature``; also a :class:`ledger.errors.InvalidSignature`),
:class:`QuoteMismatchError` (422 ``quote_mismatch``, with
``field``/``expected``/``actual``) and :class:`QuoteExpiredError` (409
``quote_expired``).

The exchange verifies its own signature on a quote once per process: a quote
it issued, or whose signature it has verified, is remembered (a bounded cache
of the digests of its signed bytes and signature, :class:`_KnownQuotes`), so
placing an order costs no SM2 verification for the quote in the process that
quoted it. Any other bytes miss the cache and are verified.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from exchange.errors import ExchangeError
from ledger.errors import InvalidSignature
from ledger.protocol.quote import CURRENCY, MAX_QUOTE_TTL_MS, QUOTE_KIND, Quote, QuoteTerms
from ledger.records import RecordFormatError
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
    "parse_quote",
    "quote_terms",
    "verify_quote",
]

DEFAULT_QUOTE_TTL_MS: Final = 15 * 60 * 1000


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


@contextmanager
def _as_quote_format_error() -> Iterator[None]:
    try:
        yield
    except RecordFormatError as exc:
        raise QuoteFormatError(str(exc)) from None


def parse_quote(data: Any, *, path: str = "") -> Quote:
    """Parse a quote's JSON form; raises :class:`QuoteFormatError`."""
    with _as_quote_format_error():
        return Quote.from_dict(data, path=path)


def quote_terms(
    *,
    rows: int | None,
    periods: int | None,
    licence: str,
    row_offset: int | None = None,
    computation: bool = False,
    queries: int | None = None,
    purpose: str | None = None,
) -> QuoteTerms:
    """:class:`QuoteTerms`, or :class:`QuoteFormatError` for out-of-range values."""
    with _as_quote_format_error():
        return QuoteTerms(rows, periods, licence, row_offset, computation, queries, purpose)


class _KnownQuotes:
    """Digests of quotes (signed bytes + signature) this process signed or verified
    with its log key: the least recently used are forgotten beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._digests: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(quote: Quote) -> bytes:
        return hashlib.sha256(quote.signed_bytes() + b"\x00" + quote.signature).digest()

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
    policy_digest: str | None = None,
    ttl_ms: int = DEFAULT_QUOTE_TTL_MS,
) -> Quote:
    """Sign a fresh quote (random ``quote_id``) valid from ``now`` for ``ttl_ms``.

    The caller computes ``amount`` with :func:`exchange.pricing.price` from
    the listing's pricing and ``terms``. Raises :class:`QuoteFormatError` for
    out-of-range values.
    """
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 1:
        raise QuoteFormatError("ttl_ms must be a positive integer")
    with _as_quote_format_error():
        unsigned = Quote(
            quote_id=secrets.token_hex(16),
            listing_id=listing_id,
            listing_version=listing_version,
            content_digest=content_digest,
            buyer_key_id=buyer_key_id,
            terms=terms,
            amount=amount,
            currency=CURRENCY,
            issued_at=now,
            expires_at=now + ttl_ms,
            log_key_id=log_key.key_id(),
            signature=b"\x00",  # a placeholder: every field is validated before signing
            policy_digest=policy_digest,
        )
    quote = unsigned.sign(log_key)
    _KNOWN.add(_KnownQuotes.digest(quote))
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
    policy_digest: str | None = None,
) -> None:
    """Check that ``quote`` is the exchange's, for this order, and unexpired.

    In this order: signed by ``log_pub`` (else :class:`QuoteSignatureError`),
    matches the order's buyer, listing, version, amount and — when given —
    content digest, terms and usage-policy digest (else :class:`QuoteMismatchError` naming the
    first differing field), and ``now < expires_at``
    (else :class:`QuoteExpiredError`). Returns ``None``; never a bool.
    """
    if quote.log_key_id != log_pub.key_id():
        raise QuoteSignatureError(
            f"the quote names log key {quote.log_key_id}, not this exchange's {log_pub.key_id()}"
        )
    digest = _KnownQuotes.digest(quote)
    if digest not in _KNOWN:  # (the log key id in the signed bytes is log_pub's)
        try:
            quote.verify(log_pub)
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
    if policy_digest is not None:
        expected.append(("policy_digest", policy_digest, quote.policy_digest))
    for field, wanted, actual in expected:
        if wanted != actual or type(wanted) is not type(actual):
            raise QuoteMismatchError(field, wanted, actual)
    if now >= quote.expires_at:
        raise QuoteExpiredError(quote.expires_at, now)
