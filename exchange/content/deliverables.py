"""Provider-custody deliverables: each order's ciphertext, stored byte for byte.

In provider custody the provider's agent encrypts what an order bought to the
buyer and uploads only the ciphertext; the exchange cannot decrypt it and
never tries. Layout under ``root_dir``::

    orders/<order_id>/<ciphertext sm3>.sm4s   one upload of the order's deliverable
    tmp/<random>                              uploads in progress

:meth:`DeliverableStore.write` streams an upload into a private temporary file
(SM3-hashed as it is written, at most ``max_bytes``), fsyncs it and renames it
into place: a file under ``orders/`` is always complete, and its name is the
SM3 of its bytes as the exchange computed it. A re-upload adds a file beside
the earlier one; once the provider's ``delivery.issued`` names one of them,
:meth:`DeliverableStore.keep_only` removes the others.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exchange.content.errors import ContentTooLargeError, InvalidContentIdError
from exchange.content.store import READ_BLOCK, read_file_range
from ledger.sm3 import SM3Hasher

__all__ = ["DeliverableStore", "StoredDeliverable"]

_ORDER_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SM3: Final = re.compile(r"[0-9a-f]{64}")
_SUFFIX: Final = ".sm4s"


@dataclass(frozen=True, slots=True)
class StoredDeliverable:
    """One stored upload of an order's ciphertext."""

    order_id: str
    sm3_hex: str
    size: int
    path: Path

    @property
    def etag(self) -> str:
        return f'"{self.sm3_hex}"'

    def read_range(
        self, start: int = 0, end: int | None = None, *, block_size: int = READ_BLOCK
    ) -> Iterator[bytes]:
        return read_file_range(self.path, self.size, start, end, block_size=block_size)


def _check_order_id(order_id: str) -> str:
    if not _ORDER_ID.fullmatch(order_id):
        raise InvalidContentIdError("an order id is a lowercase UUID")
    return order_id


class DeliverableStore:
    """Order deliverables under ``root_dir`` (thread- and process-safe: uploads are
    private temporary files until one ``rename``)."""

    def __init__(self, root_dir: str | Path) -> None:
        self.root = Path(root_dir)
        self._orders = self.root / "orders"
        self._tmp = self.root / "tmp"
        self._orders.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _dir(self, order_id: str) -> Path:
        return self._orders / _check_order_id(order_id)

    def write(self, order_id: str, chunks: Iterable[bytes], max_bytes: int) -> StoredDeliverable:
        """Store the bytes of ``chunks`` as one upload of the order's deliverable.

        Raises :class:`ContentTooLargeError` beyond ``max_bytes``, or whatever the
        chunks raise (a disconnect, a digest mismatch); nothing is kept then."""
        directory = self._dir(order_id)
        temporary = self._tmp / f"{order_id}-{secrets.token_hex(12)}"
        hasher, size = SM3Hasher(), 0
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ContentTooLargeError(max_bytes)
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = hasher.hexdigest()
            directory.mkdir(exist_ok=True)
            path = directory / f"{digest}{_SUFFIX}"
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return StoredDeliverable(order_id, digest, size, path)

    def find(self, order_id: str, sm3_hex: str) -> StoredDeliverable | None:
        """The order's stored upload whose SM3 is ``sm3_hex``, if there is one."""
        if not _SM3.fullmatch(sm3_hex):
            return None
        path = self._dir(order_id) / f"{sm3_hex}{_SUFFIX}"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return StoredDeliverable(order_id, sm3_hex, size, path)

    def uploads(self, order_id: str) -> list[StoredDeliverable]:
        """Every stored upload of the order, newest first."""
        directory = self._dir(order_id)
        if not directory.is_dir():
            return []
        found = []
        for path in directory.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                found.append((stat.st_mtime_ns, path.name, stat.st_size, path))
        found.sort(reverse=True)
        return [
            StoredDeliverable(order_id, name.removesuffix(_SUFFIX), size, path)
            for _, name, size, path in found
        ]

    def keep_only(self, order_id: str, sm3_hex: str) -> None:
        """Remove the order's uploads other than the one named ``sm3_hex``."""
        for upload in self.uploads(order_id):
            if upload.sm3_hex != sm3_hex:
                with contextlib.suppress(FileNotFoundError):
                    upload.path.unlink()
