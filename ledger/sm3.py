"""SM3 (GB/T 32905) digests from `cryptography`: one-shot and streaming."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes

DIGEST_SIZE = 32
_FILE_CHUNK = 1 << 20


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data``."""
    hasher = hashes.Hash(hashes.SM3())
    hasher.update(data)
    return hasher.finalize()


class SM3Hasher:
    """Incremental SM3: feed with :meth:`update`, read once with :meth:`digest`."""

    def __init__(self) -> None:
        self._hash = hashes.Hash(hashes.SM3())
        self._final: bytes | None = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._final is not None:
            raise ValueError("SM3Hasher already finalised")
        self._hash.update(data)

    def digest(self) -> bytes:
        if self._final is None:
            self._final = self._hash.finalize()
        return self._final

    def hexdigest(self) -> str:
        return self.digest().hex()


def sm3_file(
    path: str | Path,
    *,
    chunk_size: int = _FILE_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """Stream ``path`` through SM3 without holding it in memory.

    ``progress`` is called with the number of bytes read after each chunk.
    """
    hasher = SM3Hasher()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            hasher.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return hasher.digest()
