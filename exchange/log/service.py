"""Appending to the log: check the actor's signature, store the leaf at the next
index, and answer at once with the log's signed promise.

The expensive, parallel part (parsing, SM2 verification, canonical encoding,
SM3) happens before any lock is taken (:func:`parse_submission`,
:func:`check_submission`). The serialised part — read the next index, sign
one promise batch, insert, commit — is :func:`commit_groups`, run in
:func:`exclusive_transaction`, so indexes are unique and gap-free across
threads and worker processes. It costs one SM2 signature per transaction
(per :data:`~exchange.log.models.MAX_PROMISE_BATCH` entries), whatever the
number of records: the promises of a transaction are signed as one
:class:`ledger.checkpoint.PromiseBatch`.

:func:`append` and :func:`append_many` are the synchronous, all-or-nothing
core (one caller, one transaction). The API instead hands checked
submissions to the :class:`exchange.log.appender.Appender`, whose committer
thread stores the submissions of many concurrent requests in one
transaction and one durable commit (group commit) with :func:`commit_groups`.
"""

from __future__ import annotations

import time
from base64 import b64encode
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlmodel import Session

from exchange.log.errors import (
    ActorMismatchError,
    DuplicateRecordError,
    InvalidPublicKeyError,
    InvalidRecordError,
    RecordSignatureError,
)
from exchange.log.locking import LogLock, exclusive_transaction
from exchange.log.models import MAX_PROMISE_BATCH, LogEntry
from ledger import records
from ledger.checkpoint import Promise, PromiseBatch, sign_promise_batch
from ledger.errors import InvalidSignature, KeyFormatError
from ledger.merkle import leaf_hash
from ledger.records import RecordFormatError, SignedRecord
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "Accepted",
    "GroupOutcome",
    "Submission",
    "append",
    "append_many",
    "check_submission",
    "check_submissions",
    "commit_groups",
    "parse_submission",
    "refuse_repeats",
    "store",
]

_IN_CHUNK = 500
"""Leaf hashes per ``IN (...)`` duplicate check (well under every bind limit)."""

_CHUNKS = 16
"""Tasks per parallel step of :func:`append_many` (enough to balance a few CPUs)."""

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class Submission:
    """A signed record whose actor signature has been checked: ready to store."""

    signed: SignedRecord
    public_key: SM2PublicKey
    leaf: bytes
    leaf_hash: bytes
    public_key_pem: str
    """``public_key`` as SubjectPublicKeyInfo PEM (what is stored)."""


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


GroupOutcome = list[Accepted] | DuplicateRecordError
"""What :func:`commit_groups` made of one group: its entries, or why it was refused."""


def parse_submission(record: Any, public_key_pem: str) -> tuple[SignedRecord, SM2PublicKey]:
    """Parse a ``SignedRecord.to_dict()`` and an SM2 public key PEM.

    Raises :class:`InvalidRecordError` or :class:`InvalidPublicKeyError` (400).
    """
    try:
        signed = SignedRecord.from_dict(record)
    except RecordFormatError as exc:
        raise InvalidRecordError(f"malformed record: {exc}") from None
    try:
        public_key = SM2PublicKey.from_pem(public_key_pem)
    except KeyFormatError as exc:
        raise InvalidPublicKeyError(f"public_key: {exc}") from None
    return signed, public_key


def check_submission(signed: SignedRecord, public_key: SM2PublicKey) -> Submission:
    """Check that ``public_key`` is the actor and its signature holds.

    Raises :class:`ActorMismatchError` or :class:`RecordSignatureError` (400).
    """
    actor = public_key.key_id()
    if actor != signed.record.actor:
        raise ActorMismatchError(str(records.ActorMismatchError(signed.record.actor, actor)))
    signed_bytes = signed.record.canonical_bytes()
    try:
        public_key.verify(signed.signature, signed_bytes)  # = signed.verify(public_key)
    except InvalidSignature as exc:
        raise RecordSignatureError(
            f"the actor's signature over the record does not verify ({exc})"
        ) from None
    leaf = _leaf_bytes(signed_bytes, signed.signature)
    pem = public_key.to_pem().decode("ascii")
    return Submission(signed, public_key, leaf, leaf_hash(leaf), pem)


def _leaf_bytes(record_bytes: bytes, signature: bytes) -> bytes:
    """``SignedRecord.leaf_bytes()`` from the record's canonical bytes, without
    encoding the record a second time: RFC 8785 of ``{"record": …, "signature":
    base64}`` is the two members in that (sorted) order, the record as its own
    canonical bytes, and base64 needs no JSON escaping."""
    return b'{"record":' + record_bytes + b',"signature":"' + b64encode(signature) + b'"}'


def check_submissions(
    items: Sequence[tuple[SignedRecord, SM2PublicKey]],
    *,
    executor: Executor | None = None,
) -> list[Submission]:
    """:func:`check_submission` of several records (in parallel on ``executor``),
    refusing a record given twice.

    Raises like :func:`check_submission`, with the failing item's position
    (``records[i]: …``), or :class:`DuplicateRecordError`.
    """

    def check(position: int) -> Submission:
        signed, public_key = items[position]
        try:
            return check_submission(signed, public_key)
        except (ActorMismatchError, RecordSignatureError) as exc:
            raise type(exc)(f"records[{position}]: {exc.message}") from None

    submissions = _map(executor, check, range(len(items)))
    refuse_repeats(submissions)
    return submissions


def refuse_repeats(submissions: Sequence[Submission]) -> None:
    """Raise :class:`DuplicateRecordError` (409) if a record is given twice."""
    first_seen: dict[bytes, int] = {}
    for position, submission in enumerate(submissions):
        digest = submission.leaf_hash
        if digest in first_seen:
            raise DuplicateRecordError(
                f"records[{position}] repeats records[{first_seen[digest]}] "
                f"(leaf hash {digest.hex()})"
            )
        first_seen[digest] = position


def append(
    session: Session, signed: SignedRecord, public_key: SM2PublicKey, log_key: SM2PrivateKey
) -> tuple[LogEntry, Promise]:
    """Verify one record, store it at the next index and commit; return the
    entry and the log's signed promise.

    Raises the 400 errors of :func:`check_submission`, or
    :class:`DuplicateRecordError` (409). Commits ``session``.
    """
    [accepted] = store(session, [check_submission(signed, public_key)], log_key)
    return accepted.entry, accepted.promise


def append_many(
    session: Session,
    items: Iterable[tuple[SignedRecord, SM2PublicKey]],
    log_key: SM2PrivateKey,
    *,
    executor: Executor | None = None,
) -> list[Accepted]:
    """Verify and store several records in one transaction, all or none.

    Indexes are consecutive, in the order given. With ``executor`` (a thread
    pool), verification runs in parallel. Raises like :func:`append`; the
    message of a 400 names the failing item's position.
    """
    return store(session, check_submissions(list(items), executor=executor), log_key)


def store(
    session: Session, submissions: Sequence[Submission], log_key: SM2PrivateKey
) -> list[Accepted]:
    """Store checked submissions at the next indexes, with signed promises, and
    commit them together with whatever the caller staged on ``session``
    (:func:`exchange.records.commit_with_records`): all of it, or nothing.

    Raises :class:`DuplicateRecordError` if a leaf is already in the log or
    given twice: nothing is stored then, neither the records nor the staged
    change (the error is raised inside the transaction, which rolls it back).
    """
    if not submissions:
        return []
    with exclusive_transaction(session, LogLock.APPEND):
        [outcome] = _insert_groups(session, [submissions], log_key)
        if isinstance(outcome, DuplicateRecordError):
            raise outcome
    return outcome


def commit_groups(
    session: Session,
    groups: Sequence[Sequence[Submission]],
    log_key: SM2PrivateKey,
) -> list[GroupOutcome]:
    """Store several independent groups of checked submissions in ONE durable
    transaction; return one outcome per group, in order.

    Each group is all or nothing. A group holding a leaf that is already in the
    log, or in an earlier group of this call, or twice in itself, is refused
    alone (its outcome is a :class:`DuplicateRecordError`); the others get
    consecutive indexes in the order given. The accepted entries are covered by
    one promise batch (one SM2 signature) per :data:`MAX_PROMISE_BATCH` entries.

    Runs in :func:`exclusive_transaction`: raises its ``LogBusyError`` (503)
    when the write lock cannot be had, or the database's error; nothing is
    stored then.

    ``session`` must have nothing staged: the transaction commits whatever groups
    are accepted, so a change staged for a refused group would be committed
    without its record. (:func:`store` is the all-or-nothing variant that
    commits a staged change with its records.)
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("commit_groups needs a session with nothing staged; use store")
    with exclusive_transaction(session, LogLock.APPEND):
        return _insert_groups(session, groups, log_key)


def _insert_groups(
    session: Session,
    groups: Sequence[Sequence[Submission]],
    log_key: SM2PrivateKey,
) -> list[GroupOutcome]:
    """The body of :func:`commit_groups`, run while its lock is held."""
    hashes = [s.leaf_hash for group in groups for s in group]
    connection = session.connection()
    stored, last = _stored_and_last(connection, hashes)
    accepted_groups: list[int] = []
    refused: dict[int, tuple[int, bytes]] = {}  # group -> (position, leaf hash)
    taken: set[bytes] = set()  # leaf hashes that earlier groups of this call take
    for g, group in enumerate(groups):
        in_group: set[bytes] = set()
        for position, submission in enumerate(group):
            digest = submission.leaf_hash
            if digest in stored or digest in taken or digest in in_group:
                refused[g] = (position, digest)
                break
            in_group.add(digest)
        else:
            accepted_groups.append(g)
            taken |= in_group
    start = 0 if last is None else last + 1
    timestamp = time.time_ns() // 1_000_000
    leaves = [s for g in accepted_groups for s in groups[g]]
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
        )
        for i, s in enumerate(leaves)
    ]
    _insert_rows(connection, "promise_batch", _BATCH_COLUMNS, map(_batch_row, batches))
    _insert_rows(connection, "log_entry", _ENTRY_COLUMNS, rows)
    index_of = {s.leaf_hash: start + i for i, s in enumerate(leaves)}
    outcomes: list[GroupOutcome] = []
    done = 0
    for g, group in enumerate(groups):
        if g in refused:
            position, digest = refused[g]
            outcomes.append(_duplicate(position, digest, stored, index_of, group))
            continue
        outcomes.append(
            [
                Accepted(dict(zip(_ENTRY_COLUMNS, rows[done + i], strict=True)), promises[done + i])
                for i in range(len(group))
            ]
        )
        done += len(group)
    return outcomes


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
)
_MAX_PARAMETERS = 999
"""Bound parameters per INSERT statement (SQLite's historical limit; PostgreSQL's is 65535)."""


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


def _duplicate(
    position: int,
    digest: bytes,
    stored: Mapping[bytes, int],
    index_of: Mapping[bytes, int],
    group: Sequence[Submission],
) -> DuplicateRecordError:
    where = f"records[{position}]: " if len(group) > 1 else ""
    index = stored.get(digest, index_of.get(digest))
    if index is None:  # repeated inside its own group (callers normally refuse that first)
        first = next(i for i, s in enumerate(group) if s.leaf_hash == digest)
        return DuplicateRecordError(
            f"records[{position}] repeats records[{first}] (leaf hash {digest.hex()})"
        )
    return DuplicateRecordError(
        f"{where}the record with leaf hash {digest.hex()} is already in the log at index {index}"
    )


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


def _map(executor: Executor | None, fn: Callable[[_T], _R], values: Iterable[_T]) -> list[_R]:
    """``[fn(v) for v in values]``, in order; on ``executor`` in a few chunks (one
    task per item would cost more in hand-offs than small items take)."""
    items = list(values)
    if executor is None or len(items) < 2:
        return [fn(v) for v in items]
    size = -(-len(items) // _CHUNKS)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    return [r for done in executor.map(lambda c: [fn(v) for v in c], chunks) for r in done]
