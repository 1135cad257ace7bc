"""``ledger.protocol.quote``: the quote's shape, signed bytes and signature, shared by
the exchange and the SDK."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ledger.errors import InvalidSignature
from ledger.protocol.quote import QUOTE_KIND, Quote, QuoteTerms
from ledger.records import RecordFormatError, canonical_json
from ledger.sm2 import SM2PrivateKey

NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _quote(log_key: SM2PrivateKey, terms: QuoteTerms | None = None, **changes: Any) -> Quote:
    unsigned = Quote(
        quote_id="0f" * 16,
        listing_id="lst_weather",
        listing_version=3,
        content_digest="ab" * 32,
        buyer_key_id="cd" * 32,
        terms=terms or QuoteTerms(rows=20, periods=None, licence="CC-BY-4.0", row_offset=5),
        amount=8_000,
        currency="CNY",
        issued_at=NOW,
        expires_at=NOW + 60_000,
        log_key_id=log_key.key_id(),
        signature=b"\x00",
    )
    return dataclasses.replace(unsigned.sign(log_key), **changes)


TERMS: list[tuple[str, QuoteTerms, dict[str, Any]]] = [
    (
        "whole dataset",
        QuoteTerms(rows=None, periods=None, licence="L"),
        {"rows": None, "periods": None, "licence": "L"},
    ),
    (
        "rows from an offset",
        QuoteTerms(rows=10, periods=None, licence="L", row_offset=0),
        {"rows": 10, "row_offset": 0, "periods": None, "licence": "L"},
    ),
    (
        "periods",
        QuoteTerms(rows=None, periods=2, licence="L"),
        {"rows": None, "periods": 2, "licence": "L"},
    ),
    (
        "queries",
        QuoteTerms(rows=None, periods=None, licence="L", computation=True, queries=3),
        {"rows": None, "periods": None, "licence": "L", "computation": True, "queries": 3},
    ),
    (
        "a budget",
        QuoteTerms(rows=None, periods=None, licence="L", computation=True),
        {"rows": None, "periods": None, "licence": "L", "computation": True, "queries": None},
    ),
]


@pytest.mark.parametrize(("terms", "wire"), [c[1:] for c in TERMS], ids=[c[0] for c in TERMS])
def test_terms_carry_only_the_fields_of_their_kind_and_round_trip(
    log_key: SM2PrivateKey, terms: QuoteTerms, wire: dict[str, Any]
) -> None:
    quote = _quote(log_key, terms)
    assert quote.to_dict()["terms"] == wire
    again = Quote.from_dict(quote.to_dict())
    assert again == quote
    assert again.signed_bytes() == quote.signed_bytes()
    again.verify(log_key.public_key())


def test_signed_bytes_are_the_json_form_with_the_kind(log_key: SM2PrivateKey) -> None:
    quote = _quote(log_key)
    body = quote.to_dict()
    del body["signature"]
    assert quote.signed_bytes() == canonical_json({"kind": QUOTE_KIND, **body})
    log_key.public_key().verify(quote.signature, quote.signed_bytes())


def test_an_altered_or_foreign_quote_does_not_verify(log_key: SM2PrivateKey) -> None:
    with pytest.raises(InvalidSignature):
        _quote(log_key, amount=1).verify(log_key.public_key())
    other = SM2PrivateKey.generate()
    with pytest.raises(InvalidSignature, match="names log key"):
        _quote(log_key).verify(other.public_key())
    forged = _quote(other, log_key_id=log_key.key_id())
    with pytest.raises(InvalidSignature):
        forged.verify(log_key.public_key())


def test_signing_with_a_key_the_quote_does_not_name_is_refused(log_key: SM2PrivateKey) -> None:
    with pytest.raises(ValueError, match="names log key"):
        _quote(log_key).sign(SM2PrivateKey.generate())


def test_the_issued_answer_may_grow_but_the_quote_may_not(log_key: SM2PrivateKey) -> None:
    quote = _quote(log_key)
    assert Quote.from_issued({"quote": quote.to_dict(), "hint": 1}) == quote
    with pytest.raises(RecordFormatError, match="unknown field"):
        Quote.from_issued({"quote": {**quote.to_dict(), "discount": 5}})


FORMAT: list[tuple[str, Any, str]] = [
    ("float amount", lambda d: d.update(amount=8000.0), "amount"),
    ("bool amount", lambda d: d.update(amount=True), "amount"),
    ("huge amount", lambda d: d.update(amount=10**15 + 1), "amount"),
    ("other currency", lambda d: d.update(currency="USD"), "currency"),
    ("missing field", lambda d: d.pop("expires_at"), "quote"),
    ("expiry before issue", lambda d: d.update(expires_at=d["issued_at"]), "expires_at"),
    ("bad quote id", lambda d: d.update(quote_id="xyz"), "quote_id"),
    ("bad digest", lambda d: d.update(content_digest="AB" * 32), "content_digest"),
    ("bad signature base64", lambda d: d.update(signature="***"), "quote.signature"),
    ("terms not an object", lambda d: d.update(terms=[1]), "quote.terms"),
    ("float rows", lambda d: d["terms"].update(rows=1.5), "terms.rows"),
    ("offset without rows", lambda d: d["terms"].update(rows=None), "terms.row_offset"),
    ("extra term", lambda d: d["terms"].update(price=1), "quote.terms"),
    (
        "computation false",
        lambda d: d["terms"].update(computation=False, queries=None),
        "quote.terms.computation",
    ),
]


@pytest.mark.parametrize(("desc", "mutate", "path"), FORMAT, ids=[c[0] for c in FORMAT])
def test_a_malformed_quote_is_refused_naming_the_field(
    log_key: SM2PrivateKey, desc: str, mutate: Any, path: str
) -> None:
    data = _quote(log_key).to_dict()
    mutate(data)
    with pytest.raises(RecordFormatError) as refused:
        Quote.from_dict(data)
    assert refused.value.path == path, desc
