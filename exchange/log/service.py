"""Appending to the log: check the actor's signature, store the leaf at the next
index, and answer at once with the log's signed promise.

The expensive, parallel part (parsing, SM2 verification, canonical encoding,
SM3) happens before any lock is taken (:func:`parse_submission`,
:func:`check_submission`). The serialised part — read the next index, apply
the staged state changes, sign one promise batch, insert, commit — is
:func:`exchange.log.batch.commit_batch`, run in an exclusive transaction, so
indexes are unique and gap-free across threads and worker processes. It
costs one SM2 signature per transaction (per
:data:`~exchange.log.models.MAX_PROMISE_BATCH` entries), whatever the number of
records: the promises of a transaction are signed as one
:class:`ledger.checkpoint.PromiseBatch`.

:func:`append`, :func:`append_many`, :func:`store` and :func:`commit_groups`
are the synchronous forms (one caller, one transaction) kept for tools,
tests and benchmarks. The API instead hands checked submissions (and the
state change staged with them, :mod:`exchange.records`) to the
:class:`exchange.log.appender.Appender`, whose committer thread stores those
of many concurrent requests in one transaction and one durable commit (group
commit) with the same :func:`~exchange.log.batch.commit_batch`.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlmodel import Session

from exchange.log.batch import Accepted, BatchItem, commit_batch, take_staged
from exchange.log.errors import (
    ActorMismatchError,
    DuplicateRecordError,
    InvalidPublicKeyError,
    InvalidRecordError,
    RecordSignatureError,
)
from exchange.log.models import LogEntry
from ledger import records
from ledger.checkpoint import Promise
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
    (:func:`exchange.log.batch.take_staged`): all of it, or nothing. The
    synchronous form of the write path, a batch of one, for callers outside the
    request path (tools, tests, benchmarks); requests go through the
    :class:`~exchange.log.appender.Appender` (:mod:`exchange.records`).

    Raises :class:`DuplicateRecordError` if a leaf is already in the log or
    given twice, or the staged change's refusal: nothing is stored then,
    neither the records nor the staged change.
    """
    if not submissions:
        return []
    change = take_staged(session)
    [outcome] = commit_batch(session, [BatchItem(submissions, change)], log_key)
    if isinstance(outcome, Exception):
        raise outcome
    change.return_to(session)
    return outcome


def commit_groups(
    session: Session,
    groups: Sequence[Sequence[Submission]],
    log_key: SM2PrivateKey,
) -> list[GroupOutcome]:
    """Store several independent groups of checked submissions (no state change)
    in ONE durable transaction (:func:`exchange.log.batch.commit_batch`); return
    one outcome per group, in order.

    Each group is all or nothing. A group holding a leaf that is already in the
    log, or in an earlier group of this call, or twice in itself, is refused
    alone (its outcome is a :class:`DuplicateRecordError`); the others get
    consecutive indexes in the order given. The accepted entries are covered by
    one promise batch (one SM2 signature) per :data:`MAX_PROMISE_BATCH` entries.

    Raises ``LogBusyError`` (503) when the write lock cannot be had, or the
    database's error; nothing is stored then.
    """
    outcomes = commit_batch(session, [BatchItem(group) for group in groups], log_key)
    return [o for o in outcomes if isinstance(o, list | DuplicateRecordError)]


def _map(executor: Executor | None, fn: Callable[[_T], _R], values: Iterable[_T]) -> list[_R]:
    """``[fn(v) for v in values]``, in order; on ``executor`` in a few chunks (one
    task per item would cost more in hand-offs than small items take)."""
    items = list(values)
    if executor is None or len(items) < 2:
        return [fn(v) for v in items]
    size = -(-len(items) // _CHUNKS)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    return [r for done in executor.map(lambda c: [fn(v) for v in c], chunks) for r in done]
