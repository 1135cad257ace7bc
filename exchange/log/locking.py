"""Serialised, durable write transactions for the log, across processes.

Several API worker processes may share one database; the log's invariants
(gap-free indexes, one tree) need their writers to take turns:

* SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock up front (a
  deferred ``BEGIN`` would let two writers read the same ``max(index)`` and
  collide at commit). The pysqlite driver only begins transactions implicitly
  before DML, so an explicit ``BEGIN IMMEDIATE`` as the first statement is
  honoured and its ``COMMIT`` issued by ``commit()``. The commit runs with
  ``synchronous=FULL`` (the engine's default is ``NORMAL``, which in WAL mode
  may lose the last commits on power loss: a promise is a commitment, so its
  entry must survive that). A connection that ran one stays at ``FULL`` (its
  later commits are durable too), which spares the group-committing appender
  two statements per transaction.
* PostgreSQL: ``pg_advisory_xact_lock(key)`` inside the transaction, one key
  per purpose and schema (advisory locks belong to the whole database: two
  exchanges in two schemas of one database do not wait on each other), so
  appends and sequencing do not wait on each other. Under READ COMMITTED every
  statement after the lock sees what the previous holder committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from exchange.errors import ExchangeError

__all__ = ["LogBusyError", "LogLock", "exclusive_transaction"]


class LogLock(StrEnum):
    """The log's locks: on PostgreSQL, advisory locks whose key is a hash of this
    name and the schema (computed by the database, in the locking statement)."""

    APPEND = "shancheng/log-append"
    SEQUENCE = "shancheng/log-sequence"


_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:name || '@' || current_schema(), 0))")


class LogBusyError(ExchangeError):
    """The database's write lock could not be taken in time."""

    status = 503
    code = "log_busy"


@contextmanager
def exclusive_transaction(session: Session, lock: LogLock) -> Iterator[None]:
    """Run the body as one write transaction serialised with every other holder of
    ``lock`` (on SQLite: with every other writer), committed durably at its end
    and rolled back if it raises.

    Precondition: ``session`` has no pending writes (its previous transaction
    was committed or rolled back).
    """
    connection = session.connection()
    dialect = connection.dialect.name
    raw: Any = connection.connection.dbapi_connection
    if dialect == "sqlite":
        if raw.in_transaction:
            raise RuntimeError("exclusive_transaction needs a session without pending writes")
        info = connection.connection.info
        try:
            if not info.get(_SQLITE_FULL):
                raw.execute("PRAGMA synchronous=FULL")
                info[_SQLITE_FULL] = True
            raw.execute("BEGIN IMMEDIATE")
        except Exception as exc:  # sqlite3.OperationalError: database is locked
            session.rollback()
            raise LogBusyError(f"the log database is busy: {exc}") from None
    elif dialect == "postgresql":
        try:
            # no_autoflush: changes a caller staged (exchange.records) must be
            # written after the lock is held, not before, as on SQLite.
            with session.no_autoflush:
                session.execute(_LOCK, {"name": lock.value})
        except OperationalError as exc:
            session.rollback()
            raise LogBusyError(f"the log database is busy: {exc.orig}") from None
    else:  # pragma: no cover - make_engine builds only these two
        raise NotImplementedError(f"no log lock for the {dialect} dialect")
    try:
        yield
        if dialect == "sqlite":
            # Commit on the driver connection (the one that ran BEGIN IMMEDIATE);
            # the session's own commit below then finds no open transaction.
            session.flush()
            raw.commit()
        session.commit()
    except BaseException:
        if dialect == "sqlite":
            raw.rollback()
        session.rollback()
        raise


_SQLITE_FULL = "shancheng.synchronous_full"
"""Key in a pooled SQLite connection's ``info``: it runs with ``synchronous=FULL``."""
