"""The buyer's side of a delivery: decrypt a downloaded ciphertext and check its SM3 digest.

A delivered dataset is exactly a :func:`ledger.sm4.encrypt_stream` stream
(a 16-byte header, then chunks of ``chunk_size`` plaintext bytes each sealed
with SM4-GCM on its own; the nonce carries the chunk index and a final-chunk
flag, the header is in every chunk's AAD), so dropping, reordering,
truncating or bit-flipping chunks fails authentication. The associated data
binds the stream to its listing version::

    aad = RFC 8785 {"kind": "shancheng.content.v1", "listing_id": str, "version": int}

The content key reaches the buyer in a digital envelope: SM2-encrypted to the
buyer's public key (:func:`ledger.envelope.wrap_key`). :func:`decrypt_delivery`
opens it and decrypts; :func:`decrypt_file` takes the content key itself.
Both stream (memory stays at about one chunk whatever the size), hash the
plaintext with SM3 as it is written, and compare it with the digest the
listing committed to.

Errors: :class:`ledger.errors.DecryptionError` for any tampering, truncation,
reordering, wrong key or wrong listing version (also an envelope that does
not open), :class:`DigestMismatchError` for authentic ciphertext whose
plaintext is not the committed one. The exchange's content store
(``exchange.content``) writes this format and re-exports these functions.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from ledger import envelope, sm4
from ledger.errors import VerificationError
from ledger.records import canonical_json
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import SM3Hasher

__all__ = [
    "CONTENT_KIND",
    "DigestMismatchError",
    "Progress",
    "check_sm3_hex",
    "content_aad",
    "decrypt_delivery",
    "decrypt_file",
    "decrypt_stream",
]

CONTENT_KIND: Final = "shancheng.content.v1"

Progress = Callable[[int], None]
"""Called with the number of plaintext bytes written so far, after each chunk."""

_SM3_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")


class DigestMismatchError(VerificationError):
    """The decrypted plaintext's SM3 is not the digest the listing committed to.

    ``expected`` is the committed digest, ``actual`` the computed one (lowercase hex)."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"SM3 of the content is {actual}, expected {expected}")


def content_aad(listing_id: str, version: int) -> bytes:
    """The associated data sealed into every chunk of a listing version's content."""
    return canonical_json({"kind": CONTENT_KIND, "listing_id": listing_id, "version": version})


def check_sm3_hex(value: object) -> str:
    """An SM3 digest as 64 hex digits, returned lowercase; else :class:`ValueError`."""
    if not isinstance(value, str) or not _SM3_HEX.fullmatch(value):
        raise ValueError("an SM3 digest is 64 hex digits")
    return value.lower()


class _HashingWriter:
    """A write-only file that hashes (and counts) what passes through it."""

    def __init__(self, dst: BinaryIO, progress: Progress | None) -> None:
        self._dst = dst
        self._progress = progress
        self.hasher = SM3Hasher()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self._dst.write(data)
        self.size += len(data)
        if self._progress is not None:
            self._progress(self.size)
        return len(data)


def decrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    listing_id: str,
    version: int,
    expected_sm3_hex: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Decrypt a downloaded ciphertext stream into ``dst``; return the plaintext's SM3 hex.

    Preconditions: ``expected_sm3_hex``, when given, is 64 hex digits (else
    :class:`ValueError`, before anything is read). Raises
    :class:`ledger.errors.DecryptionError` and :class:`DigestMismatchError`
    (see the module docstring). On either error ``dst`` holds unauthenticated
    partial output: discard it (:func:`decrypt_file` with a path does that).
    """
    expected = None if expected_sm3_hex is None else check_sm3_hex(expected_sm3_hex)
    writer = _HashingWriter(dst, progress)
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
    progress: Progress | None = None,
) -> str:
    """Decrypt a downloaded ciphertext file, streaming; return the plaintext's SM3 hex.

    ``src``/``dst`` are paths or binary files. With a ``dst`` path the
    plaintext goes to a temporary file beside it, renamed into place only
    once every chunk authenticated and (if ``expected_sm3_hex`` is given)
    the digest matched; on failure nothing is left at ``dst`` (an existing
    file there is left untouched). Errors as :func:`decrypt_stream`.
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
                progress=progress,
            )
    if not isinstance(dst, str | Path):
        return decrypt_stream(
            key,
            src,
            dst,
            listing_id=listing_id,
            version=version,
            expected_sm3_hex=expected_sm3_hex,
            progress=progress,
        )
    if expected_sm3_hex is not None:
        check_sm3_hex(expected_sm3_hex)
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
                progress=progress,
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
        return digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def decrypt_delivery(
    buyer_key: SM2PrivateKey,
    wrapped_key: bytes,
    src: str | Path | BinaryIO,
    dst: str | Path | BinaryIO,
    *,
    listing_id: str,
    version: int,
    expected_sm3_hex: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Open the envelope ``wrapped_key`` (the content key SM2-encrypted to
    ``buyer_key``'s public key) and :func:`decrypt_file` with it.

    Raises :class:`ledger.errors.DecryptionError` when the envelope does not
    open with ``buyer_key`` (or holds no SM4 key), otherwise as :func:`decrypt_file`.
    """
    key = envelope.unwrap_key(buyer_key, wrapped_key)
    return decrypt_file(
        key,
        src,
        dst,
        listing_id=listing_id,
        version=version,
        expected_sm3_hex=expected_sm3_hex,
        progress=progress,
    )
