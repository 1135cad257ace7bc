"""SM4-GCM (GB/T 32907 block cipher, GCM as in RFC 8998) from `cryptography`.

Two formats:

* **Blob** (:func:`encrypt` / :func:`decrypt`): ``iv (12) || ciphertext || tag (16)``
  with optional associated data, for anything that fits in memory.
* **Stream** (:func:`encrypt_stream` / :func:`decrypt_stream`): large files in
  fixed-size chunks, each sealed on its own (the STREAM construction of
  Hoang et al., as in Tink and age) so that neither side holds the whole file:

  ``header (16) = b"SM4S" || version (1) || chunk_size (4, BE) || nonce_prefix (7)``,
  then chunks ``ciphertext || tag (16)``; chunk *i* uses the nonce
  ``nonce_prefix || i (4, BE) || last (1)`` and the associated data
  ``header || aad``. Every chunk but the last holds exactly ``chunk_size``
  plaintext bytes, so dropping, reordering or truncating chunks, or editing
  the header, fails authentication.

Keys come from :func:`generate_key` (``secrets``); nonces from ``os.urandom``.
A failed check raises :class:`ledger.errors.DecryptionError`.
"""

from __future__ import annotations

import os
import secrets
import struct
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ledger.errors import DecryptionError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "IV_SIZE",
    "KEY_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "OVERHEAD",
    "STREAM_HEADER_SIZE",
    "TAG_SIZE",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "generate_key",
]

KEY_SIZE: Final = 16
IV_SIZE: Final = 12
TAG_SIZE: Final = 16
OVERHEAD: Final = IV_SIZE + TAG_SIZE
"""Bytes :func:`encrypt` adds to the plaintext."""

DEFAULT_CHUNK_SIZE: Final = 1 << 16
MIN_CHUNK_SIZE: Final = 1 << 10
MAX_CHUNK_SIZE: Final = 1 << 24

_STREAM_MAGIC: Final = b"SM4S"
_STREAM_VERSION: Final = 1
_STREAM_HEADER: Final = struct.Struct(">4sBI7s")
STREAM_HEADER_SIZE: Final = _STREAM_HEADER.size  # 16
_NONCE_PREFIX_SIZE: Final = 7
_MAX_CHUNKS: Final = 1 << 32


def generate_key() -> bytes:
    """A fresh random 16-byte SM4 key."""
    return secrets.token_bytes(KEY_SIZE)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"an SM4 key is {KEY_SIZE} bytes")


def _seal(key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(iv)).encryptor()
    if aad:
        encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, encryptor.tag


def _open(key: bytes, iv: bytes, ciphertext: memoryview | bytes, tag: bytes, aad: bytes) -> bytes:
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(iv, tag)).decryptor()
    if aad:
        decryptor.authenticate_additional_data(aad)
    plaintext = decryptor.update(ciphertext)
    try:
        return plaintext + decryptor.finalize()
    except InvalidTag:
        raise DecryptionError(
            "SM4-GCM authentication failed (tampered data, wrong key or wrong AAD)"
        ) from None


# --------------------------------------------------------------------------- blob


def encrypt(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Seal ``plaintext`` under ``key``: ``iv || ciphertext || tag``, fresh random iv."""
    _check_key(key)
    iv = os.urandom(IV_SIZE)
    ciphertext, tag = _seal(key, iv, plaintext, aad)
    return b"".join((iv, ciphertext, tag))


def decrypt(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Open a blob from :func:`encrypt`; ``aad`` must match the one sealed with.

    Raises :class:`DecryptionError` on any tampering, a wrong key or AAD, or a
    blob too short to hold an iv and a tag.
    """
    _check_key(key)
    if len(blob) < OVERHEAD:
        raise DecryptionError("SM4-GCM blob is truncated")
    view = memoryview(blob)
    return _open(key, bytes(view[:IV_SIZE]), view[IV_SIZE:-TAG_SIZE], bytes(view[-TAG_SIZE:]), aad)


# --------------------------------------------------------------------------- stream


def _chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_full(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of stream."""
    data = src.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing:
        more = src.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def encrypt_stream(
    key: bytes,
    src: BinaryIO,
    dst: BinaryIO,
    aad: bytes = b"",
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Encrypt ``src`` to ``dst`` chunk by chunk; return the plaintext length."""
    _check_key(key)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
    prefix = os.urandom(_NONCE_PREFIX_SIZE)
    header = _STREAM_HEADER.pack(_STREAM_MAGIC, _STREAM_VERSION, chunk_size, prefix)
    chunk_aad = header + aad
    dst.write(header)
    total = 0
    index = 0
    current = _read_full(src, chunk_size)
    while True:
        following = _read_full(src, chunk_size) if len(current) == chunk_size else b""
        last = not following
        if index >= _MAX_CHUNKS:
            raise ValueError("stream too long for one key")
        ciphertext, tag = _seal(key, _chunk_nonce(prefix, index, last), current, chunk_aad)
        dst.write(ciphertext)
        dst.write(tag)
        total += len(current)
        if last:
            return total
        index += 1
        current = following


def decrypt_stream(key: bytes, src: BinaryIO, dst: BinaryIO, aad: bytes = b"") -> int:
    """Decrypt a stream from :func:`encrypt_stream`; return the plaintext length.

    Plaintext is written chunk by chunk as each chunk authenticates; if a
    :class:`DecryptionError` is raised part-way (tampering, truncation,
    reordering, wrong key or AAD), discard what was written to ``dst``.
    """
    _check_key(key)
    header = _read_full(src, STREAM_HEADER_SIZE)
    if len(header) < STREAM_HEADER_SIZE:
        raise DecryptionError("SM4-GCM stream is truncated (no header)")
    magic, version, chunk_size, prefix = _STREAM_HEADER.unpack(header)
    if magic != _STREAM_MAGIC or version != _STREAM_VERSION:
        raise DecryptionError("not an SM4-GCM stream of a known version")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise DecryptionError("SM4-GCM stream header has an invalid chunk size")
    chunk_aad = header + aad
    sealed_size = chunk_size + TAG_SIZE
    total = 0
    index = 0
    current = _read_full(src, sealed_size)
    while True:
        if len(current) < TAG_SIZE:
            raise DecryptionError("SM4-GCM stream is truncated")
        following = _read_full(src, sealed_size) if len(current) == sealed_size else b""
        last = not following
        if index >= _MAX_CHUNKS:
            raise DecryptionError("SM4-GCM stream too long")
        view = memoryview(current)
        plaintext = _open(
            key,
            _chunk_nonce(prefix, index, last),
            view[:-TAG_SIZE],
            bytes(view[-TAG_SIZE:]),
            chunk_aad,
        )
        dst.write(plaintext)
        total += len(plaintext)
        if last:
            return total
        index += 1
        current = following
