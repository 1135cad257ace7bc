"""The stored ciphertext format and the buyer-side decryption.

Stored content is exactly a :func:`ledger.sm4.encrypt_stream` stream (the
STREAM construction: a 16-byte header, then chunks of ``chunk_size``
plaintext bytes each sealed with SM4-GCM on its own; the nonce carries the
chunk index and a final-chunk flag, the header is in every chunk's AAD).
Dropping, reordering, truncating or bit-flipping chunks fails authentication
at decryption. The associated data binds the stream to its listing version::

    aad = RFC 8785 {"kind": "shancheng.content.v1", "listing_id": str, "version": int}

so a ciphertext cannot be passed off as another listing's (its key is fresh
per content anyway). The exchange never decrypts for delivery: it serves the
stored ciphertext bytes as they are, so HTTP Range requests work on them and
a download can resume at any byte offset; the buyer decrypts the whole file
with :func:`decrypt_file` and checks the SM3 digest committed in the listing.

The format and the buyer side live in :mod:`ledger.delivery` (pure, so the
SDK decrypts without importing server code); this module re-exports them
with the exchange's error types.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from exchange.content.errors import DigestMismatchError, InvalidContentIdError
from ledger import delivery
from ledger.delivery import CONTENT_KIND, content_aad

__all__ = [
    "CONTENT_KIND",
    "check_digest",
    "content_aad",
    "decrypt_file",
    "decrypt_stream",
]


def check_digest(value: object) -> str:
    """An SM3 digest as 64 hex digits, returned lowercase; else :class:`InvalidContentIdError`."""
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidContentIdError("an SM3 digest is 64 hex digits")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise InvalidContentIdError("an SM3 digest is 64 hex digits") from None
    return value.lower()


def _translated(call: Callable[[], str]) -> str:
    """Run a :mod:`ledger.delivery` call, raising this package's
    :class:`DigestMismatchError` (an API error) for the ledger's."""
    try:
        return call()
    except delivery.DigestMismatchError as exc:
        raise DigestMismatchError(exc.expected, exc.actual) from None


def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    listing_id: str,
    version: int,
    expected_sm3_hex: str | None = None,
) -> str:
    """:func:`ledger.delivery.decrypt_stream` (the buyer side lives in ``ledger`` so the
    SDK needs no server code); a bad ``expected_sm3_hex`` is an
    :class:`InvalidContentIdError`, a mismatch this package's :class:`DigestMismatchError`."""
    expected = None if expected_sm3_hex is None else check_digest(expected_sm3_hex)
    return _translated(
        lambda: delivery.decrypt_stream(
            key, src, dst, listing_id=listing_id, version=version, expected_sm3_hex=expected
        )
    )


def decrypt_file(
    key: bytes,
    src: str | Path | BinaryIO,
    dst: str | Path | BinaryIO,
    *,
    listing_id: str,
    version: int,
    expected_sm3_hex: str | None = None,
) -> str:
    """:func:`ledger.delivery.decrypt_file`, errors as :func:`decrypt_stream`: with a
    ``dst`` path nothing is left there on failure."""
    expected = None if expected_sm3_hex is None else check_digest(expected_sm3_hex)
    return _translated(
        lambda: delivery.decrypt_file(
            key, src, dst, listing_id=listing_id, version=version, expected_sm3_hex=expected
        )
    )
