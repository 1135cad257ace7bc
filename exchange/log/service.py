"""Appending to the log: check the actor's signature, store the leaf at the next
index, and answer at once with the log's signed promise.

The expensive, parallel part (SM2 verification, canonical encoding, SM3)
happens before any lock is taken. The serialised part — read the next index,
sign the promises, insert, commit — runs in :func:`exclusive_transaction`, so
indexes are unique and gap-free across threads and worker processes. The
SM2 backend releases the GIL, so an ``executor`` (threads) spreads both
verification and promise signing over the CPUs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, func, insert, select
from sqlmodel import Session

from exchange.log.errors import (
    ActorMismatchError,
    DuplicateRecordError,
    InvalidPublicKeyError,
    InvalidRecordError,
    RecordSignatureError,
)
from exchange.log.locking import LogLock, exclusive_transaction
from exchange.log.models import LogEntry, log_entry_table
from ledger import records
from ledger.checkpoint import Promise, sign_promise
from ledger.errors import InvalidSignature, KeyFormatError
from ledger.merkle import leaf_hash
from ledger.records import RecordFormatError, SignedRecord
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "Accepted",
    "Submission",
    "append",
    "append_many",
    "check_submission",
    "parse_submission",
    "store",
]

_ENTRIES = log_entry_table

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
    try:
        signed.verify(public_key)
    except records.ActorMismatchError as exc:
        raise ActorMismatchError(str(exc)) from None
    except InvalidSignature as exc:
        raise RecordSignatureError(
            f"the actor's signature over the record does not verify ({exc})"
        ) from None
    leaf = signed.leaf_bytes()
    return Submission(signed, public_key, leaf, leaf_hash(leaf))


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
    pool), verification and promise signing run in parallel. Raises like
    :func:`append`; the message of a 400 names the failing item's position.
    """
    items = list(items)

    def check(position: int) -> Submission:
        signed, public_key = items[position]
        try:
            return check_submission(signed, public_key)
        except (ActorMismatchError, RecordSignatureError) as exc:
            raise type(exc)(f"records[{position}]: {exc.message}") from None

    submissions = _map(executor, check, range(len(items)))
    return store(session, submissions, log_key, executor=executor)


def store(
    session: Session,
    submissions: Sequence[Submission],
    log_key: SM2PrivateKey,
    *,
    executor: Executor | None = None,
) -> list[Accepted]:
    """Store checked submissions at the next indexes, with signed promises; commit.

    Raises :class:`DuplicateRecordError` if a leaf is already in the log or
    given twice (nothing is stored then).
    """
    if not submissions:
        return []
    hashes = [s.leaf_hash for s in submissions]
    first_seen: dict[bytes, int] = {}
    for position, h in enumerate(hashes):
        if h in first_seen:
            raise DuplicateRecordError(
                f"records[{position}] repeats records[{first_seen[h]}] (leaf hash {h.hex()})"
            )
        first_seen[h] = position
    with exclusive_transaction(session, LogLock.APPEND):
        connection = session.connection()
        _refuse_stored(connection, hashes)
        last = connection.execute(select(func.max(_ENTRIES.c.index))).scalar_one()
        start = 0 if last is None else last + 1
        timestamp = time.time_ns() // 1_000_000
        promises = _map(
            executor,
            lambda i: sign_promise(log_key, hashes[i], start + i, timestamp),
            range(len(hashes)),
        )
        rows = [
            {
                "index": start + i,
                "leaf_hash": s.leaf_hash,
                "leaf": s.leaf,
                "record_type": s.signed.record.type,
                "actor_key_id": s.signed.record.actor,
                "actor_public_key": s.public_key.to_pem().decode("ascii"),
                "accepted_at": timestamp,
                "log_key_id": promises[i].log_key_id,
                "promise_signature": promises[i].signature,
            }
            for i, s in enumerate(submissions)
        ]
        connection.execute(insert(_ENTRIES), rows)
    return [Accepted(row, promise) for row, promise in zip(rows, promises, strict=True)]


def _refuse_stored(connection: Connection, hashes: Sequence[bytes]) -> None:
    for begin in range(0, len(hashes), _IN_CHUNK):
        chunk = hashes[begin : begin + _IN_CHUNK]
        found = connection.execute(
            select(_ENTRIES.c.index, _ENTRIES.c.leaf_hash)
            .where(_ENTRIES.c.leaf_hash.in_(chunk))
            .limit(1)
        ).first()
        if found is not None:
            index, digest = found
            raise DuplicateRecordError(
                f"the record with leaf hash {digest.hex()} is already in the log at index {index}"
            )


def _map(executor: Executor | None, fn: Callable[[_T], _R], values: Iterable[_T]) -> list[_R]:
    """``[fn(v) for v in values]``, in order; on ``executor`` in a few chunks (one
    task per item would cost more in hand-offs than small items take)."""
    items = list(values)
    if executor is None or len(items) < 2:
        return [fn(v) for v in items]
    size = -(-len(items) // _CHUNKS)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    return [r for done in executor.map(lambda c: [fn(v) for v in c], chunks) for r in done]
