"""The agent's small state on disk: every write atomic (temp + fsync + rename + dir fsync).

Layout of the state directory::

    events.json                 {"last_event_id": "42"}: where the event feed resumes
    orders/<order_id>.json      one order's progress (see :mod:`agent.deliver`)
    work/<order_id>.sm4         an order's sealed deliverable until it is delivered
    work/<order_id>.slice       a quantity order's plaintext slice while it is encrypted
    computations/<id>.json      one computation's progress (see :mod:`agent.answer`)
    work/<id>.result            a computation's encrypted result until it is answered
    rows/<listing>.v<N>.idx     the row index of a dataset version (:mod:`ledger.row_tree`)

A kill -9 at any moment leaves each file either as it was or as it was meant
to be; a temporary file left behind (``.*.tmp``) is ignored and overwritten.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Final

__all__ = ["AgentState", "StateError", "atomic_write"]

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class StateError(Exception):
    """The state directory cannot be used (unwritable, or a file in it is corrupt)."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: the old content or the new, never a mix."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _safe(name: str) -> str:
    """A server-given id as a file name (no path tricks)."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise StateError(f"{name!r} is not usable as a file name")
    return name


class AgentState:
    """The agent's state directory (created if missing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            for sub in ("orders", "computations", "work", "rows"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot use the state directory {self.root}: {exc}") from None

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"{path} is unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise StateError(f"{path} is not a JSON object")
        return data

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write(path, json.dumps(data, sort_keys=True).encode())

    # ------------------------------------------------------------------ the event feed

    @property
    def last_event_id(self) -> str | None:
        data = self._read(self.root / "events.json")
        value = None if data is None else data.get("last_event_id")
        return value if isinstance(value, str) else None

    def save_last_event_id(self, event_id: str) -> None:
        self._write(self.root / "events.json", {"last_event_id": event_id})

    # ------------------------------------------------------------------ orders

    def order(self, order_id: str) -> dict[str, Any] | None:
        return self._read(self.root / "orders" / f"{_safe(order_id)}.json")

    def save_order(self, order_id: str, progress: dict[str, Any]) -> None:
        self._write(self.root / "orders" / f"{_safe(order_id)}.json", progress)

    def sealed_path(self, order_id: str) -> Path:
        return self.root / "work" / f"{_safe(order_id)}.sm4"

    def slice_path(self, order_id: str) -> Path:
        return self.root / "work" / f"{_safe(order_id)}.slice"

    # ------------------------------------------------------------------ computations

    def computation(self, computation_id: str) -> dict[str, Any] | None:
        return self._read(self.root / "computations" / f"{_safe(computation_id)}.json")

    def save_computation(self, computation_id: str, progress: dict[str, Any]) -> None:
        self._write(self.root / "computations" / f"{_safe(computation_id)}.json", progress)

    def result_path(self, computation_id: str) -> Path:
        return self.root / "work" / f"{_safe(computation_id)}.result"

    # ------------------------------------------------------------------ datasets

    def row_index_path(self, listing_id: str, version: int) -> Path:
        return self.root / "rows" / f"{_safe(listing_id)}.v{int(version)}.idx"
