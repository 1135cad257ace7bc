"""The one write transaction: staged state changes and their log entries, many
requests at a time (group commit).

A request checks its signed record and the business rules outside any lock,
then *stages* its state change on its own session (ORM rows added or changed,
plus conditional statements registered with :func:`run_at_commit`) without
flushing. :func:`take_staged` moves that change out of the request's session
as a :class:`StagedChange`: the rows leave the request's session (detached,
with their pending changes) and the statements go with them.

:func:`commit_batch` then stores many such items in ONE transaction, run in
:func:`~exchange.log.locking.exclusive_transaction`:

1. one query finds which of the batch's leaf hashes are already in the log
   and the last index;
2. for each item in order: a duplicate leaf (in the log, in an earlier
   accepted item, twice in the item) refuses it (409 ``duplicate_record``);
   else its change is applied on the batch's session inside a SAVEPOINT —
   the statements first (conditional updates: ``WHERE available >= amount``,
   seat counters, used quotes, re-reads of what must still hold), then the
   rows are flushed (optimistic ``row_version`` checks, unique keys). A
   refusal there (a domain error, a stale row → 409 ``concurrent_update``, an
   integrity error → 409 ``conflict``) rolls back only that savepoint and is
   the item's outcome;
3. the accepted items' entries get consecutive indexes and are covered by
   one promise-batch signature (per :data:`MAX_PROMISE_BATCH` entries);
4. one durable commit.

So a refused item leaves nothing (neither its record nor its change), and the
others commit with one lock acquisition, one signature and one fsync.

A statement registered with :func:`run_until_committed` (the request's nonce,
:mod:`exchange.auth.verifier`) goes first into every change taken from the
session until one such change was committed (:func:`forget_committed`); if
none was (a refusal, an endpoint that commits nothing through the batch),
:func:`commit_pending` stores it in a transaction of its own.
After the commit the rows are detached from the batch's session, with the
values they were written with; :meth:`StagedChange.return_to` puts them back
in the request's session so that it can answer from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session

from exchange.errors import ConflictError, ExchangeError
from exchange.log.errors import DuplicateRecordError
from exchange.log.locking import LogLock, exclusive_transaction
from exchange.log.models import MAX_ORDER_ID, MAX_PROMISE_BATCH, LogEntry
from ledger.checkpoint import Promise, PromiseBatch, sign_promise_batch
from ledger.sm2 import SM2PrivateKey

if TYPE_CHECKING:
    from exchange.log.service import Submission

__all__ = [
    "Accepted",
    "BatchItem",
    "ConcurrentUpdateError",
    "Outcome",
    "StagedChange",
    "Statement",
    "commit_batch",
    "commit_pending",
    "forget_committed",
    "run_at_commit",
    "run_until_committed",
    "take_staged",
]

Statement = Callable[[Connection], None]
"""A conditional statement of a staged change, run on the batch's connection; it
raises a domain error to refuse the change."""

_STATEMENTS = "shancheng.staged_statements"
"""Key in ``Session.info``: the statements registered by :func:`run_at_commit`."""

_UNTIL_COMMITTED = "shancheng.until_committed"
"""Key in ``Session.info``: the statements registered by :func:`run_until_committed`."""

_IN_CHUNK = 500
"""Leaf hashes per ``IN (...)`` duplicate check (well under every bind limit)."""


class ConcurrentUpdateError(ConflictError):
    code = "concurrent_update"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A stored entry (its column values) and the log's promise for it."""

    row: Mapping[str, Any]
    promise: Promise

    @property
    def index(self) -> int:
        return self.promise.index

    @property
    def entry(self) -> LogEntry:
        return LogEntry(**self.row)


Outcome = list[Accepted] | Exception
"""What :func:`commit_batch` made of one item: its entries, or why it was refused."""


@contextmanager
def run_at_commit(session: Session, statement: Statement) -> Iterator[None]:
    """Register ``statement`` as part of the change staged on ``session`` in this
    block: it runs inside the change's transaction, before its rows are written,
    on that transaction's connection (:func:`commit_batch`)."""
    statements: list[Statement] = session.info.setdefault(_STATEMENTS, [])
    statements.append(statement)
    try:
        yield
    finally:
        statements.remove(statement)


def run_until_committed(session: Session, statement: Statement) -> None:
    """Register ``statement`` to run first in each change taken from ``session``
    (:func:`take_staged`) until one of them was committed; see :func:`commit_pending`
    for when none is."""
    session.info.setdefault(_UNTIL_COMMITTED, []).append(statement)


def forget_committed(session: Session) -> None:
    """The change taken from ``session`` was committed, with the statements of
    :func:`run_until_committed`: they are done."""
    session.info.pop(_UNTIL_COMMITTED, None)


def commit_pending(session: Session) -> None:
    """Forget the statements of :func:`run_until_committed` that no committed change
    carried, and run them in a transaction of their own (raising what they raise)."""
    pending: list[Statement] = session.info.pop(_UNTIL_COMMITTED, [])
    if not pending:
        return
    with Session(session.get_bind()) as own:
        connection = own.connection()
        for statement in pending:
            statement(connection)
        own.commit()


@dataclass(eq=False, slots=True)
class StagedChange:
    """A state change staged on a request's session and moved out of it
    (:func:`take_staged`): detached rows with their pending changes, and
    statements to run before they are written."""

    new: list[Any] = field(default_factory=list)
    dirty: list[Any] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def apply(self, session: Session) -> None:
        """Run the statements and write the rows on ``session`` (flushed)."""
        connection = session.connection()
        for statement in self.statements:
            statement(connection)
        for row in self.deleted:
            session.add(row)
            session.delete(row)
        session.add_all(self.dirty)
        session.add_all(self.new)
        session.flush()

    def detach_from(self, session: Session) -> None:
        """Take the rows out of ``session`` (written or rolled back), so that the
        next change of the batch may load or change the same rows afresh."""
        for row in (*self.new, *self.dirty, *self.deleted):
            if row in session:
                session.expunge(row)

    def return_to(self, session: Session) -> None:
        """Put the written rows (detached after the commit) back into ``session``."""
        session.add_all(self.dirty)
        session.add_all(self.new)


def take_staged(session: Session) -> StagedChange:
    """Move what is staged on ``session`` (unflushed rows, registered statements;
    those of :func:`run_until_committed` are copied, first) into a
    :class:`StagedChange`, and end the session's transaction (it read, never
    wrote). The session keeps none of those rows."""
    change = StagedChange(
        new=list(session.new),
        dirty=[row for row in session.dirty if session.is_modified(row)],
        deleted=list(session.deleted),
        statements=[
            *session.info.get(_UNTIL_COMMITTED, ()),
            *session.info.get(_STATEMENTS, ()),
        ],
    )
    for row in (*change.new, *change.dirty, *change.deleted):
        session.expunge(row)
    session.rollback()
    return change


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request's part of a batch: its checked submissions (stored together, at
    consecutive indexes) and the state change that goes with them, if any."""

    submissions: Sequence[Submission]
    change: StagedChange | None = None


def commit_batch(
    session: Session, items: Sequence[BatchItem], log_key: SM2PrivateKey
) -> list[Outcome]:
    """Store ``items`` in one durable transaction (see the module docstring);
    return one outcome per item, in order.

    Raises ``LogBusyError`` (503) when the write lock cannot be had, or a
    database error that broke the transaction: nothing is stored then, for any
    item. ``session`` must have nothing staged; after the call it holds no rows
    (the written ones are detached, see :meth:`StagedChange.return_to`).
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("commit_batch needs a session with nothing staged")
    try:
        with exclusive_transaction(session, LogLock.APPEND):
            outcomes = _stage_and_insert(session, items, log_key)
    finally:
        session.expunge_all()
    return outcomes


def _stage_and_insert(
    session: Session, items: Sequence[BatchItem], log_key: SM2PrivateKey
) -> list[Outcome]:
    """The body of :func:`commit_batch`, run while its lock is held."""
    hashes = [s.leaf_hash for item in items for s in item.submissions]
    connection = session.connection()
    stored, last = _stored_and_last(connection, hashes)
    start = 0 if last is None else last + 1
    taken: dict[bytes, int] = {}  # leaf hash -> index, for the accepted items' leaves
    leaves: list[Submission] = []
    outcomes: list[Outcome | None] = []
    for item in items:
        refusal: Exception | None = _duplicate(item.submissions, stored, taken)
        if refusal is None and item.change is not None:
            refusal = _apply_in_savepoint(session, item.change)
        if refusal is not None:
            outcomes.append(refusal)
            continue
        for submission in item.submissions:
            taken[submission.leaf_hash] = start + len(leaves)
            leaves.append(submission)
        outcomes.append(None)
    timestamp = time.time_ns() // 1_000_000
    batches, promises = _sign_batches(log_key, start, leaves, timestamp)
    rows = [
        (
            start + i,
            s.leaf_hash,
            s.leaf,
            s.signed.record.type,
            s.signed.record.actor,
            s.public_key_pem,
            promises[i].batch_first_index,
            _order_named(s),
        )
        for i, s in enumerate(leaves)
    ]
    connection = session.connection()
    _insert_rows(connection, "promise_batch", _BATCH_COLUMNS, map(_batch_row, batches))
    _insert_rows(connection, "log_entry", _ENTRY_COLUMNS, rows)
    done = 0
    result: list[Outcome] = []
    for item, outcome in zip(items, outcomes, strict=True):
        if outcome is not None:
            result.append(outcome)
            continue
        result.append(
            [
                Accepted(dict(zip(_ENTRY_COLUMNS, rows[done + i], strict=True)), promises[done + i])
                for i in range(len(item.submissions))
            ]
        )
        done += len(item.submissions)
    return result


def _apply_in_savepoint(session: Session, change: StagedChange) -> Exception | None:
    """Apply ``change`` in a savepoint; roll back only it and return the refusal
    when it fails. A database error other than an integrity error breaks the
    whole transaction and is raised."""
    try:
        with session.begin_nested():
            change.apply(session)
    except StaleDataError:
        return ConcurrentUpdateError(
            "the resource changed while this request was applied; read it and try again"
        )
    except IntegrityError as exc:
        return ConflictError(f"conflicting write: {exc.orig}")
    except DBAPIError:
        raise
    except ExchangeError as exc:
        return exc
    except Exception as exc:  # a fault of this item's change: its request fails alone
        return exc
    finally:
        change.detach_from(session)
    return None


def _duplicate(
    group: Sequence[Submission], stored: Mapping[bytes, int], taken: Mapping[bytes, int]
) -> DuplicateRecordError | None:
    """Refuse a group holding a leaf already in the log, in an earlier accepted
    group of the batch, or twice in itself."""
    first_seen: dict[bytes, int] = {}
    where = len(group) > 1
    for position, submission in enumerate(group):
        digest = submission.leaf_hash
        prefix = f"records[{position}]: " if where else ""
        if digest in first_seen:
            return DuplicateRecordError(
                f"records[{position}] repeats records[{first_seen[digest]}] "
                f"(leaf hash {digest.hex()})"
            )
        index = stored.get(digest, taken.get(digest))
        if index is not None:
            return DuplicateRecordError(
                f"{prefix}the record with leaf hash {digest.hex()} is already in the log "
                f"at index {index}"
            )
        first_seen[digest] = position
    return None


def _sign_batches(
    log_key: SM2PrivateKey, start: int, leaves: Sequence[Submission], timestamp: int
) -> tuple[list[PromiseBatch], list[Promise]]:
    batches: list[PromiseBatch] = []
    promises: list[Promise] = []
    for begin in range(0, len(leaves), MAX_PROMISE_BATCH):
        chunk = [s.leaf_hash for s in leaves[begin : begin + MAX_PROMISE_BATCH]]
        batch, signed = sign_promise_batch(log_key, start + begin, chunk, timestamp)
        batches.append(batch)
        promises.extend(signed)
    return batches, promises


_BATCH_COLUMNS = ("first_index", "size", "batch_root", "timestamp", "log_key_id", "signature")
_ENTRY_COLUMNS = (
    "index",
    "leaf_hash",
    "leaf",
    "record_type",
    "actor_key_id",
    "actor_public_key",
    "batch_first_index",
    "order_id",
)
_MAX_PARAMETERS = 999
"""Bound parameters per INSERT statement (SQLite's historical limit; PostgreSQL's is 65535)."""


def _order_named(submission: Submission) -> str | None:
    """The ``order_id`` a record's payload names (``LogEntry.order_id``)."""
    payload = submission.signed.record.payload
    order_id = payload.get("order_id") if isinstance(payload, Mapping) else None
    return order_id if isinstance(order_id, str) and len(order_id) <= MAX_ORDER_ID else None


def _batch_row(batch: PromiseBatch) -> tuple[Any, ...]:
    return (
        batch.first_index,
        batch.size,
        batch.batch_root,
        batch.timestamp,
        batch.log_key_id,
        batch.signature,
    )


def _insert_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` with as few multi-row ``INSERT … VALUES (…), (…)`` statements as
    the parameter limit allows, straight to the driver.

    Not ``executemany``: the committer runs while request threads verify
    signatures, and every statement the driver steps releases and re-takes the
    GIL; under load each re-take waits its turn, so one statement per table,
    not one per row, is what keeps a transaction short."""
    pending = list(rows)
    if not pending:
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    quoted = ", ".join(f'"{c}"' for c in columns)
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    per_statement = max(1, _MAX_PARAMETERS // len(columns))
    for begin in range(0, len(pending), per_statement):
        chunk = pending[begin : begin + per_statement]
        sql = f"INSERT INTO {table} ({quoted}) VALUES " + ", ".join([one] * len(chunk))  # noqa: S608
        connection.exec_driver_sql(sql, tuple(value for row in chunk for value in row))


def _stored_and_last(
    connection: Connection, hashes: Sequence[bytes]
) -> tuple[dict[bytes, int], int | None]:
    """``{leaf hash: index}`` of those of ``hashes`` already in the log, and the
    last index (``None`` for an empty log), in as few statements as the bind
    limit allows (one for up to :data:`_IN_CHUNK` hashes)."""
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    unique = list(dict.fromkeys(hashes))
    found: dict[bytes, int] = {}
    last: int | None = None
    chunks = [unique[i : i + _IN_CHUNK] for i in range(0, len(unique), _IN_CHUNK)] or [[]]
    for number, chunk in enumerate(chunks):
        parts = []
        if number == 0:
            parts.append('SELECT NULL, max("index") FROM log_entry')
        if chunk:
            marks = ", ".join([mark] * len(chunk))
            parts.append(f'SELECT leaf_hash, "index" FROM log_entry WHERE leaf_hash IN ({marks})')  # noqa: S608
        rows = connection.exec_driver_sql(" UNION ALL ".join(parts), tuple(chunk)).all()
        for digest, index in rows:
            if digest is None:
                last = None if index is None else int(index)
            else:
                found[bytes(digest)] = int(index)
    return found, last
