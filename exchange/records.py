"""Signed actions: a client-signed record that changes state, applied atomically
with its log entry.

A state-changing request carries ``{"record": <SignedRecord.to_dict()>}``
whose ``type`` names the action and whose ``payload`` carries its data. The
server never signs for a participant; it checks (:func:`check_action`):

* the record is well formed (400 ``invalid_record``) and of the endpoint's
  type (422 ``wrong_record_type``);
* its ``actor`` is the authenticated participant (403 ``actor_mismatch``);
* its ``timestamp`` is within the auth skew of the server clock (422 ``stale_record``);
* the actor's SM2 signature verifies (400 ``invalid_signature``);
* the payload fits the action's schema (422 ``invalid_payload``; :func:`payload_of`).

Then :func:`commit_with_record` stages the state change and stores the
record in ONE database transaction, through the one write path: the change is
staged on the request's session (no flush), moved out of it and handed with
the record to the group-committing appender, which applies it in a savepoint
of its batch transaction and inserts the entry there
(:mod:`exchange.log.batch`). So there is no state change without its record
and no record without its change. Checks that read state run before the log's
lock; what must hold atomically is re-checked in the transaction (conditional
statements registered with :func:`exchange.log.batch.run_at_commit`), and rows
carry an optimistic ``row_version`` so that a change that lost a race fails at
flush (409 ``concurrent_update``) and nothing of it is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from exchange.errors import ExchangeError, ForbiddenError
from exchange.log.appender import running_appender
from exchange.log.batch import (
    Accepted,
    BatchItem,
    ConcurrentUpdateError,
    commit_batch,
    forget_committed,
    take_staged,
)
from exchange.log.schemas import Appended, PromiseBody
from exchange.log.service import Submission, check_submission
from ledger.records import RecordFormatError, SignedRecord, sign_record, thaw
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "ActionRequest",
    "ActorMismatchError",
    "ConcurrentUpdateError",
    "InvalidPayloadError",
    "SignedAction",
    "check_action",
    "commit_with_exchange_record",
    "commit_with_record",
    "commit_with_records",
    "exchange_action",
    "log_receipt",
    "payload_of",
]

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)


class InvalidRecordError(ExchangeError):
    code = "invalid_record"


class WrongRecordTypeError(ExchangeError):
    status = 422
    code = "wrong_record_type"


class ActorMismatchError(ForbiddenError):
    code = "actor_mismatch"


class StaleRecordError(ExchangeError):
    status = 422
    code = "stale_record"


class InvalidPayloadError(ExchangeError):
    status = 422
    code = "invalid_payload"


class ActionRequest(BaseModel):
    """The body of every state-changing request."""

    model_config = ConfigDict(extra="forbid")

    record: dict[str, Any] = Field(
        description='The client-signed record, `{"record": {type, schema_version, actor, '
        'timestamp, payload}, "signature": base64}`: the actor\'s SM2 signature (DER) over the '
        "RFC 8785 bytes of the inner record (docs/bundle-v1.md).",
    )


class SignedAction:
    """A checked signed record and the key that signed it."""

    __slots__ = ("public_key", "signed", "submission")

    def __init__(self, signed: SignedRecord, public_key: SM2PublicKey) -> None:
        self.signed = signed
        self.public_key = public_key
        try:
            self.submission: Submission = check_submission(signed, public_key)
        except ExchangeError as exc:
            if exc.code == "actor_mismatch":
                raise ActorMismatchError(exc.message) from None
            raise

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = thaw(self.signed.record.payload)
        return payload


def check_action(
    body: ActionRequest,
    *,
    record_type: str,
    public_key: SM2PublicKey,
    signer: str | None,
    skew_s: int,
) -> SignedAction:
    """Parse and check a signed action (see the module docstring). ``signer`` is
    the key id of the request's authenticated signer (``None`` only for
    registration, whose record is checked against the key it registers)."""
    try:
        signed = SignedRecord.from_dict(body.record)
    except RecordFormatError as exc:
        raise InvalidRecordError(f"malformed record: {exc}") from None
    record = signed.record
    if record.type != record_type:
        raise WrongRecordTypeError(f"this endpoint takes a {record_type} record, not {record.type}")
    if signer is not None and record.actor != signer:
        raise ActorMismatchError(
            f"the record is by {record.actor}, but the request is signed by {signer}"
        )
    now_ms = time.time_ns() // 1_000_000
    if abs(now_ms - record.timestamp) > skew_s * 1000:
        raise StaleRecordError(
            f"record timestamp {record.timestamp} is more than {skew_s} s from the server "
            f"clock ({now_ms})"
        )
    return SignedAction(signed, public_key)


def payload_of(action: SignedAction, model: type[_M]) -> _M:
    """Validate the record's payload against ``model``; 422 ``invalid_payload``."""
    try:
        return model.model_validate(action.payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in ("payload", *first["loc"]))
        raise InvalidPayloadError(f"{where}: {first['msg']}") from None


def commit_with_record(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    stage: Callable[[], _T],
) -> tuple[_T, Accepted]:
    """Run ``stage`` (which reads, checks and adds/changes ORM objects on
    ``session`` without flushing; it raises a domain error to refuse), then store
    the action's record; the staged changes are flushed and committed in the
    log's append transaction, all or nothing.

    Raises ``stage``'s errors, ``DuplicateRecordError`` (409, the same record
    again), :class:`ConcurrentUpdateError` (409) or ``ConflictError`` (409, a
    unique key taken meanwhile). Nothing is stored then.
    """
    result, [accepted] = commit_with_records(session, [action], log_key, stage)
    return result, accepted


def commit_with_records(
    session: Session,
    actions: Sequence[SignedAction],
    log_key: SM2PrivateKey,
    stage: Callable[[], _T],
) -> tuple[_T, list[Accepted]]:
    """:func:`commit_with_record` for several records that must be stored together
    with one change (consecutive log indexes, one transaction): a buyer's
    ``order.accepted`` and the exchange's ``settlement.paid``, for instance.
    Returns ``stage``'s result and the records' entries, in order.

    The one write path: ``stage`` runs here (request side, no lock); what it
    staged is moved out of ``session`` (:func:`exchange.log.batch.take_staged`)
    and handed with the records to the engine's running
    :class:`~exchange.log.appender.Appender`, which applies it and stores the
    records in its next group-committed batch; this call waits for that batch.
    Outside a running app (tools, tests) the same batch of one is committed here.
    The staged rows come back into ``session`` as written.
    """
    submissions = [action.submission for action in actions]
    try:
        with session.no_autoflush:
            result = stage()
        change = take_staged(session)
    except BaseException:
        session.rollback()
        raise
    bind = session.get_bind()
    appender = running_appender(bind) if isinstance(bind, Engine) else None
    if appender is not None:
        accepted = appender.submit(submissions, change).result()
    else:
        with Session(bind, expire_on_commit=False) as own:
            [outcome] = commit_batch(own, [BatchItem(submissions, change)], log_key)
        if isinstance(outcome, Exception):
            raise outcome
        accepted = outcome
    forget_committed(session)
    change.return_to(session)
    return result, accepted


def commit_with_exchange_record(
    session: Session,
    log_key: SM2PrivateKey,
    record_type: str,
    payload: Mapping[str, Any],
    stage: Callable[[], _T],
) -> tuple[_T, Accepted]:
    """:func:`commit_with_record` for a record the exchange itself originates
    (``delivery.issued``, ``settlement.paid``, ``order.auto_accepted``, ...).

    Such a record is not a participant's action, so there is no client record
    to check: the exchange signs ``payload`` as ``record_type`` with the log key
    (actor = the log key's id, timestamp = now) and stores it atomically with
    what ``stage`` stages, exactly like a participant's record. Use it only for
    what the exchange decides on its own; never to act for a participant.

    Raises ``RecordFormatError`` for a malformed type or payload (a programming
    error) and whatever :func:`commit_with_record` raises; nothing is stored then.
    """
    action = exchange_action(log_key, record_type, payload)
    return commit_with_record(session, action, log_key, stage)


def exchange_action(
    log_key: SM2PrivateKey, record_type: str, payload: Mapping[str, Any]
) -> SignedAction:
    """A record the exchange originates, signed now with the log key (actor = the
    log key's id), to store with :func:`commit_with_records` next to the record
    that caused it (its leaf hash is known before the commit, for the rows that
    must name it)."""
    return SignedAction(sign_record(log_key, record_type, payload), log_key.public_key())


def log_receipt(accepted: Accepted) -> Appended:
    """The ``"log"`` part of a response: index, leaf hash and the log's promise."""
    promise = accepted.promise.to_dict()
    return Appended(
        index=accepted.index, leaf_hash=promise["leaf_hash"], promise=PromiseBody(**promise)
    )
