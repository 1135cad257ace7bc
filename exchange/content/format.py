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
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Final

from exchange.content.errors import DigestMismatchError, InvalidContentIdError
from ledger import sm4
from ledger.records import canonical_json
from ledger.sm3 import SM3Hasher

__all__ = [
    "CONTENT_KIND",
    "check_digest",
    "content_aad",
    "decrypt_file",
    "decrypt_stream",
]

CONTENT_KIND: Final = "shancheng.content.v1"


def content_aad(listing_id: str, version: int) -> bytes:
    """The associated data sealed into every chunk of a listing version's content."""
    return canonical_json({"kind": CONTENT_KIND, "listing_id": listing_id, "version": version})


def check_digest(value: object) -> str:
    """An SM3 digest as 64 hex digits, returned lowercase; else :class:`InvalidContentIdError`."""
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidContentIdError("an SM3 digest is 64 hex digits")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise InvalidContentIdError("an SM3 digest is 64 hex digits") from None
    return value.lower()


class _HashingWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, dst: BinaryIO) -> None:
        self._dst = dst
        self.hasher = SM3Hasher()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self._dst.write(data)
        return len(data)


def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    listing_id: str,
    version: int,
    expected_sm3_hex: str | None = None,
) -> str:
    """Decrypt a downloaded ciphertext stream into ``dst``; return the plaintext's SM3 hex.

    Raises :class:`ledger.errors.DecryptionError` on any tampering,
    truncation, reordering, wrong key or wrong listing version, and
    :class:`DigestMismatchError` if ``expected_sm3_hex`` is given and differs.
    On either error ``dst`` holds unauthenticated partial output: discard it
    (:func:`decrypt_file` with a path does that for you).
    """
    expected = None if expected_sm3_hex is None else check_digest(expected_sm3_hex)
    writer = _HashingWriter(dst)
    sm4.decrypt_stream(key, src, writer, content_aad(listing_id, version))  # type: ignore[arg-type]
    actual = writer.hasher.hexdigest()
    if expected is not None and actual != expected:
        raise DigestMismatchError(expected, actual)
    return actual


def decrypt_file(
    key: bytes,
    src: str | Path | BinaryIO,
    dst: str | Path | BinaryIO,
    *,
    listing_id: str,
    version: int,
    expected_sm3_hex: str | None = None,
) -> str:
    """Decrypt a downloaded ciphertext file, streaming; return the plaintext's SM3 hex.

    ``src``/``dst`` are paths or binary files. With a ``dst`` path the
    plaintext goes to a temporary file beside it, renamed into place only
    once every chunk authenticated and (if ``expected_sm3_hex`` is given)
    the digest matched; on failure nothing is left at ``dst``. Memory stays
    constant (one chunk). Errors as :func:`decrypt_stream`.
    """
    if isinstance(src, str | Path):
        with open(src, "rb") as handle:
            return decrypt_file(
                key,
                handle,
                dst,
                listing_id=listing_id,
                version=version,
                expected_sm3_hex=expected_sm3_hex,
            )
    if not isinstance(dst, str | Path):
        return decrypt_stream(
            key,
            src,
            dst,
            listing_id=listing_id,
            version=version,
            expected_sm3_hex=expected_sm3_hex,
        )
    target = Path(dst)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    try:
        with open(temporary, "xb") as out:
            digest = decrypt_stream(
                key,
                src,
                out,
                listing_id=listing_id,
                version=version,
                expected_sm3_hex=expected_sm3_hex,
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
        return digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
