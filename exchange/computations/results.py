"""The encrypted results providers upload, stored byte for byte (the exchange
cannot decrypt them: the key is wrapped to the buyer).

One directory per computation under ``<content_dir>/computations/``; a result is
stored under its own SM3 (``<sm3>.bin``), written to a temporary file, synced
and renamed into place, so a reader sees a whole result or none. A re-upload
(while the computation is pending) replaces the earlier one. The provider's
``computation.completed`` names the ciphertext's SM3, which picks the file: an
upload racing with the answer can never change what the answer committed to.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchange.computations.errors import ResultTooLargeError
from exchange.settings import Settings
from ledger.sm3 import SM3Hasher

__all__ = ["MAX_RESULT_BYTES", "ResultStore", "StoredResult", "result_store_from_settings"]

MAX_RESULT_BYTES: Final = 16 * 1024 * 1024
_SUFFIX: Final = ".bin"


@dataclass(frozen=True, slots=True)
class StoredResult:
    computation_id: str
    sm3_hex: str
    size: int
    path: Path


class ResultStore:
    """Encrypted computation results on disk (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _directory(self, computation_id: str) -> Path:
        return self.root / computation_id

    def store(
        self, computation_id: str, chunks: Iterable[bytes], max_bytes: int = MAX_RESULT_BYTES
    ) -> StoredResult:
        """Stream ``chunks`` into the computation's result, replacing any earlier one;
        413 ``result_too_large`` beyond ``max_bytes`` (nothing kept then, and the
        earlier result stays)."""
        directory = self._directory(computation_id)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".upload-{secrets.token_hex(8)}"
        hasher, size = SM3Hasher(), 0
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResultTooLargeError(
                            f"the result exceeds the limit of {max_bytes} bytes; nothing was kept"
                        )
                    hasher.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            digest = hasher.hexdigest()
            final = directory / f"{digest}{_SUFFIX}"
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        for other in directory.glob(f"*{_SUFFIX}"):
            if other != final:
                other.unlink(missing_ok=True)
        return StoredResult(computation_id, digest, size, final)

    def find(self, computation_id: str, sm3_hex: str) -> StoredResult | None:
        """The stored result with this SM3, if there is one."""
        path = self._directory(computation_id) / f"{sm3_hex}{_SUFFIX}"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return StoredResult(computation_id, sm3_hex, size, path)

    def uploaded(self, computation_id: str) -> bool:
        """Whether any result was uploaded for the computation."""
        directory = self._directory(computation_id)
        return directory.is_dir() and any(directory.glob(f"*{_SUFFIX}"))


def result_store_from_settings(settings: Settings) -> ResultStore:
    """The store under ``content_dir`` (default ``data_dir/content``)."""
    root = settings.content_dir or settings.data_dir / "content"
    return ResultStore(root / "computations")
