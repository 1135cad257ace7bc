"""Exchange-signed quotes: issue, verify, and every way a quote is refused."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from exchange.errors import ExchangeError
from exchange.quotes import (
    DEFAULT_QUOTE_TTL_MS,
    QUOTE_KIND,
    Quote,
    QuoteExpiredError,
    QuoteFormatError,
    QuoteMismatchError,
    QuoteSignatureError,
    QuoteTerms,
    issue_quote,
    parse_quote,
    verify_quote,
)
from ledger.checkpoint import sign_checkpoint
from ledger.errors import InvalidSignature
from ledger.records import canonical_json
from ledger.sm2 import SM2PrivateKey

NOW = 1_700_000_000_000
DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def buyer() -> str:
    return SM2PrivateKey.generate().public_key().key_id()


def _issue(log_key: SM2PrivateKey, buyer: str, **overrides: Any) -> Quote:
    args: dict[str, Any] = {
        "listing_id": "lst_weather",
        "listing_version": 3,
        "content_digest": DIGEST,
        "buyer_key_id": buyer,
        "terms": QuoteTerms(rows=20_000, periods=None, licence="CC-BY-4.0"),
        "amount": 8_000,
        "now": NOW,
    }
    args.update(overrides)
    return issue_quote(log_key, **args)


def _verify(log_key: SM2PrivateKey, quote: Quote, buyer: str, **overrides: Any) -> None:
    args: dict[str, Any] = {
        "now": NOW + 1000,
        "buyer_key_id": buyer,
        "listing_id": "lst_weather",
        "version": 3,
        "amount": 8_000,
    }
    args.update(overrides)
    verify_quote(log_key.public_key(), quote, **args)


def test_issue_and_verify(log_key: SM2PrivateKey, buyer: str) -> None:
    quote = _issue(log_key, buyer)
    assert quote.currency == "CNY"
    assert quote.expires_at == NOW + DEFAULT_QUOTE_TTL_MS
    assert quote.log_key_id == log_key.key_id()
    _verify(log_key, quote, buyer)
    _verify(
        log_key,
        quote,
        buyer,
        content_digest=DIGEST,
        terms=QuoteTerms(rows=20_000, periods=None, licence="CC-BY-4.0"),
    )


def test_quote_ids_are_random(log_key: SM2PrivateKey, buyer: str) -> None:
    ids = {_issue(log_key, buyer).quote_id for _ in range(20)}
    assert len(ids) == 20


def test_json_round_trip_keeps_the_signature_valid(log_key: SM2PrivateKey, buyer: str) -> None:
    quote = _issue(log_key, buyer)
    again = parse_quote(json.loads(json.dumps(quote.to_dict())))
    assert again == quote
    _verify(log_key, again, buyer)


def test_signed_bytes_are_canonical_with_the_domain_kind(
    log_key: SM2PrivateKey, buyer: str
) -> None:
    quote = _issue(log_key, buyer)
    body = quote.to_dict()
    del body["signature"]
    assert quote.signed_bytes() == canonical_json({"kind": QUOTE_KIND, **body})
    log_key.public_key().verify(quote.signature, quote.signed_bytes())


def test_expired_quote_is_refused_with_409(log_key: SM2PrivateKey, buyer: str) -> None:
    quote = _issue(log_key, buyer, ttl_ms=60_000)
    _verify(log_key, quote, buyer, now=NOW + 59_999)
    with pytest.raises(QuoteExpiredError) as caught:
        _verify(log_key, quote, buyer, now=NOW + 60_000)
    assert caught.value.status == 409
    assert caught.value.code == "quote_expired"


MISMATCHES: list[tuple[str, dict[str, Any], str]] = [
    ("another buyer", {"buyer_key_id": "cd" * 32}, "buyer_key_id"),
    ("another listing", {"listing_id": "lst_other"}, "listing_id"),
    ("another version", {"version": 4}, "listing_version"),
    ("another amount", {"amount": 7_999}, "amount"),
    ("another digest", {"content_digest": "ef" * 32}, "content_digest"),
    (
        "other terms",
        {"terms": QuoteTerms(rows=30_000, periods=None, licence="CC-BY-4.0")},
        "terms",
    ),
]


@pytest.mark.parametrize(("desc", "overrides", "field"), MISMATCHES, ids=[c[0] for c in MISMATCHES])
def test_mismatched_order_is_refused(
    log_key: SM2PrivateKey, buyer: str, desc: str, overrides: dict[str, Any], field: str
) -> None:
    quote = _issue(log_key, buyer)
    with pytest.raises(QuoteMismatchError) as caught:
        _verify(log_key, quote, buyer, **overrides)
    assert caught.value.field == field, desc
    assert caught.value.status == 422
    assert caught.value.code == "quote_mismatch"


def test_mismatch_reports_expected_and_actual(log_key: SM2PrivateKey, buyer: str) -> None:
    quote = _issue(log_key, buyer)
    with pytest.raises(QuoteMismatchError) as caught:
        _verify(log_key, quote, buyer, amount=1)
    assert (caught.value.expected, caught.value.actual) == (1, 8_000)


TAMPERS: list[tuple[str, str, Any]] = [
    ("amount lowered", "amount", 1),
    ("expiry extended", "expires_at", NOW + DEFAULT_QUOTE_TTL_MS + 1),
    ("buyer swapped", "buyer_key_id", "cd" * 32),
    ("version changed", "listing_version", 4),
    ("digest changed", "content_digest", "ef" * 32),
    ("listing changed", "listing_id", "lst_other"),
    ("quote id changed", "quote_id", "00" * 16),
    ("terms changed", "terms", QuoteTerms(rows=1, periods=None, licence="CC-BY-4.0")),
]


@pytest.mark.parametrize(("desc", "field", "value"), TAMPERS, ids=[c[0] for c in TAMPERS])
def test_tampered_quote_fails_its_signature(
    log_key: SM2PrivateKey, buyer: str, desc: str, field: str, value: Any
) -> None:
    quote = dataclasses.replace(_issue(log_key, buyer), **{field: value})
    with pytest.raises(QuoteSignatureError) as caught:
        verify_quote(
            log_key.public_key(),
            quote,
            now=NOW,
            buyer_key_id=quote.buyer_key_id,
            listing_id=quote.listing_id,
            version=quote.listing_version,
            amount=quote.amount,
        )
    assert isinstance(caught.value, InvalidSignature), desc
    assert isinstance(caught.value, ExchangeError)
    assert caught.value.status == 422
    assert caught.value.code == "invalid_quote_signature"


def test_bit_flipped_signature_is_refused(log_key: SM2PrivateKey, buyer: str) -> None:
    quote = _issue(log_key, buyer)
    flipped = bytearray(quote.signature)
    flipped[10] ^= 0x01
    with pytest.raises(QuoteSignatureError):
        _verify(log_key, dataclasses.replace(quote, signature=bytes(flipped)), buyer)


def test_quote_from_another_exchange_key_is_refused(log_key: SM2PrivateKey, buyer: str) -> None:
    other = SM2PrivateKey.generate()
    quote = _issue(other, buyer)
    with pytest.raises(QuoteSignatureError, match="names log key"):
        _verify(log_key, quote, buyer)
    # Claiming our key id does not help: the signature is still someone else's.
    forged = dataclasses.replace(quote, log_key_id=log_key.key_id())
    with pytest.raises(QuoteSignatureError, match="does not verify"):
        _verify(log_key, forged, buyer)


def test_checkpoint_signature_cannot_pass_as_a_quote(log_key: SM2PrivateKey, buyer: str) -> None:
    checkpoint = sign_checkpoint(log_key, 5, b"\x11" * 32, NOW)
    quote = dataclasses.replace(_issue(log_key, buyer), signature=checkpoint.signature)
    with pytest.raises(QuoteSignatureError):
        _verify(log_key, quote, buyer)


def test_verify_checks_signature_before_expiry(log_key: SM2PrivateKey, buyer: str) -> None:
    # A forged quote is reported as forged, not as merely expired.
    quote = dataclasses.replace(_issue(log_key, buyer), amount=1)
    with pytest.raises(QuoteSignatureError):
        _verify(log_key, quote, buyer, now=NOW + 10 * DEFAULT_QUOTE_TTL_MS, amount=1)


FORMAT: list[tuple[str, Any]] = [
    ("float amount", lambda d: d.update(amount=8000.0)),
    ("bool amount", lambda d: d.update(amount=True)),
    ("negative amount", lambda d: d.update(amount=-1)),
    ("huge amount", lambda d: d.update(amount=10**15 + 1)),
    ("other currency", lambda d: d.update(currency="USD")),
    ("missing field", lambda d: d.pop("expires_at")),
    ("unknown field", lambda d: d.update(discount=5)),
    ("expiry before issue", lambda d: d.update(expires_at=d["issued_at"])),
    ("bad quote id", lambda d: d.update(quote_id="xyz")),
    ("bad digest", lambda d: d.update(content_digest="AB" * 32)),
    ("bad buyer", lambda d: d.update(buyer_key_id="nope")),
    ("zero version", lambda d: d.update(listing_version=0)),
    ("bad signature base64", lambda d: d.update(signature="***")),
    ("terms not an object", lambda d: d.update(terms=[1])),
    ("float rows", lambda d: d["terms"].update(rows=1.5)),
    ("empty licence", lambda d: d["terms"].update(licence="")),
    ("extra term", lambda d: d["terms"].update(price=1)),
]


@pytest.mark.parametrize(("desc", "mutate"), FORMAT, ids=[c[0] for c in FORMAT])
def test_malformed_quote_json_is_refused(
    log_key: SM2PrivateKey, buyer: str, desc: str, mutate: Any
) -> None:
    data = _issue(log_key, buyer).to_dict()
    mutate(data)
    with pytest.raises(QuoteFormatError) as caught:
        parse_quote(data)
    assert caught.value.status == 422, desc
    assert caught.value.code == "invalid_quote"


def test_a_quote_that_is_not_an_object_is_refused() -> None:
    not_quotes: list[Any] = ["", [], None, 1, {"amount": 1}]
    for data in not_quotes:
        with pytest.raises(QuoteFormatError):
            parse_quote(data)


def test_issue_refuses_bad_values(log_key: SM2PrivateKey, buyer: str) -> None:
    with pytest.raises(QuoteFormatError):
        _issue(log_key, buyer, amount=-5)
    with pytest.raises(QuoteFormatError):
        _issue(log_key, buyer, ttl_ms=0)
    with pytest.raises(QuoteFormatError):
        _issue(log_key, buyer, ttl_ms=30 * 24 * 3600 * 1000)
