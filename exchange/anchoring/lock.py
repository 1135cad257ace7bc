"""One active anchoring worker per database (per schema on PostgreSQL).

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``, its key
  derived from the lock's name and the schema) held on a
  dedicated connection for the worker's life; it vanishes with the session, so a
  killed worker never leaves it behind.
* SQLite file: an OS file lock (``filelock``, ``flock`` on Linux) on
  ``<database>.anchor-worker.lock`` next to the database; released by the kernel
  when the process dies, even by ``kill -9``.
* In-memory SQLite cannot be shared between processes: a process-local lock.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

_SCHEMA_KEY = "hashtextextended(:name || '@' || current_schema(), 0)"
"""The 64-bit advisory lock key of a lock name in the connection's schema: advisory
locks belong to the whole database, and exchanges in two schemas of one database
must not elect one anchoring worker between them."""


class LockLostError(RuntimeError):
    """The single-worker lock is no longer held (the database session died)."""


class WorkerLock:
    """Base: ``acquire`` (non-blocking by default), ``release``, ``ensure_held``."""

    description = "anchoring worker lock"

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def ensure_held(self) -> None:
        """Raise :class:`LockLostError` if the lock was lost behind our back."""

    def acquire(
        self, *, wait: bool = False, poll_s: float = 0.5, stop: threading.Event | None = None
    ) -> bool:
        """Take the lock; with ``wait``, poll until it is free or ``stop`` is set."""
        stop = stop or threading.Event()
        while True:
            if self.try_acquire():
                return True
            if not wait or stop.wait(poll_s):
                return False


class FileWorkerLock(WorkerLock):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._lock = FileLock(path, thread_local=False)

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)


class AdvisoryWorkerLock(WorkerLock):
    def __init__(self, engine: Engine, name: str = "shancheng/anchor-worker") -> None:
        self.engine = engine
        self.name = name
        self.description = f"PostgreSQL advisory lock {name}"
        self._conn: Connection | None = None

    def key(self) -> int:
        """The advisory lock's 64-bit key in the engine's schema (as ``pg_locks`` shows it)."""
        with self.engine.connect() as conn:
            key = conn.execute(text(f"SELECT {_SCHEMA_KEY}"), {"name": self.name}).scalar_one()
        return int(key)

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        conn = self.engine.connect()
        try:
            got = bool(
                conn.execute(
                    text(f"SELECT pg_try_advisory_lock({_SCHEMA_KEY})"), {"name": self.name}
                ).scalar()
            )
            conn.commit()  # the lock is session-level: it outlives the transaction
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text(f"SELECT pg_advisory_unlock({_SCHEMA_KEY})"), {"name": self.name})
            conn.commit()
        except SQLAlchemyError:
            conn.invalidate()  # the session is gone, and the lock with it
        finally:
            conn.close()

    def ensure_held(self) -> None:
        if self._conn is None:
            raise LockLostError("the advisory lock is not held")
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
        except SQLAlchemyError as exc:
            raise LockLostError(f"lost the database session holding {self.description}") from exc


class LocalWorkerLock(WorkerLock):
    """For an in-memory SQLite database, which only this process can see."""

    _locks: Final[dict[str, threading.Lock]] = {}
    _guard: Final = threading.Lock()

    def __init__(self, name: str) -> None:
        with self._guard:
            self._lock = self._locks.setdefault(name, threading.Lock())
        self.description = f"process-local lock {name}"
        self._held = False

    def try_acquire(self) -> bool:
        if not self._held:
            self._held = self._lock.acquire(blocking=False)
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def worker_lock(engine: Engine, role: str = "anchor-worker") -> WorkerLock:
    """The single-worker lock that fits ``engine``'s database, one per ``role``
    (``anchor-worker``, ``sequencer``): across the processes on one database,
    at most one holds it."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "postgresql":
        return AdvisoryWorkerLock(engine, f"shancheng/{role}")
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return LocalWorkerLock(f"{url}#{role}")
        db = Path(database).resolve()
        return FileWorkerLock(db.with_name(f"{db.name}.{role}.lock"))
    raise ValueError(f"no single-worker lock for a {backend} database")
