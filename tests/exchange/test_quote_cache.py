"""The exchange verifies its own quote signature once per process: a quote it
issued (or verified before) is accepted without an SM2 verification, any other
bytes are verified."""

from __future__ import annotations

import dataclasses

import pytest

from exchange.quotes import Quote, QuoteSignatureError, QuoteTerms, issue_quote, verify_quote
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

NOW = 1_700_000_000_000


class CountingKey:
    """An SM2 public key that counts its verifications."""

    def __init__(self, key: SM2PublicKey) -> None:
        self._key = key
        self.verified = 0

    def key_id(self) -> str:
        return self._key.key_id()

    def verify(self, signature: bytes, message: bytes) -> None:
        self.verified += 1
        self._key.verify(signature, message)


def _issue(log_key: SM2PrivateKey, buyer: str, listing_id: str) -> Quote:
    return issue_quote(
        log_key,
        listing_id=listing_id,
        listing_version=1,
        content_digest="ab" * 32,
        buyer_key_id=buyer,
        terms=QuoteTerms(rows=None, periods=None, licence="standard"),
        amount=100,
        now=NOW,
    )


def _verify(public: CountingKey, quote: Quote, buyer: str) -> None:
    verify_quote(
        public,  # type: ignore[arg-type]
        quote,
        now=NOW + 1,
        buyer_key_id=buyer,
        listing_id=quote.listing_id,
        version=1,
        amount=100,
    )


def test_an_issued_quote_is_not_verified_again_and_a_foreign_one_once() -> None:
    log_key = SM2PrivateKey.generate()
    public = CountingKey(log_key.public_key())
    buyer = SM2PrivateKey.generate().public_key().key_id()

    issued = _issue(log_key, buyer, "lst_issued_here")
    _verify(public, issued, buyer)
    _verify(public, Quote.from_dict(issued.to_dict()), buyer)
    assert public.verified == 0

    # Signed with the same key elsewhere (another process): verified once, then known.
    elsewhere = dataclasses.replace(
        issued,
        quote_id="ff" * 16,
        signature=log_key.sign(dataclasses.replace(issued, quote_id="ff" * 16).signed_bytes()),
    )
    _verify(public, elsewhere, buyer)
    _verify(public, elsewhere, buyer)
    assert public.verified == 1


def test_altered_bytes_miss_the_cache_and_fail() -> None:
    log_key = SM2PrivateKey.generate()
    public = CountingKey(log_key.public_key())
    buyer = SM2PrivateKey.generate().public_key().key_id()
    issued = _issue(log_key, buyer, "lst_altered")
    _verify(public, issued, buyer)

    cheaper = dataclasses.replace(issued, amount=1)
    with pytest.raises(QuoteSignatureError):
        verify_quote(
            public,  # type: ignore[arg-type]
            cheaper,
            now=NOW + 1,
            buyer_key_id=buyer,
            listing_id=issued.listing_id,
            version=1,
            amount=1,
        )
    assert public.verified == 1
