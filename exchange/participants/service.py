"""Participant state changes, each applied with its signed record (exchange.records)."""

from __future__ import annotations

from typing import TypeVar

from sqlmodel import Session

from exchange.errors import ConflictError, ExchangeError, NotFoundError
from exchange.log.service import Accepted
from exchange.participants.models import (
    APPROVED_ROLES,
    Participant,
    ParticipantStatus,
    Principal,
    Role,
)
from exchange.participants.operators import Operators
from exchange.participants.schemas import ApprovedPayload, RegisteredPayload, SuspendedPayload
from exchange.records import (
    ActionRequest,
    InvalidPayloadError,
    InvalidRecordError,
    SignedAction,
    WrongRecordTypeError,
    check_action,
    commit_with_record,
    payload_of,
)
from ledger.errors import KeyFormatError
from ledger.protocol import participant as wire
from ledger.records import RecordFormatError, SignedRecord
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = ["approve", "profile", "public_profile", "register", "suspend"]

_P = TypeVar("_P", ApprovedPayload, SuspendedPayload)


class ParticipantNotFoundError(NotFoundError):
    code = "participant_not_found"


class AlreadyRegisteredError(ConflictError):
    code = "already_registered"


class InvalidTransitionError(ConflictError):
    code = "invalid_transition"


class KeyMismatchError(ExchangeError):
    status = 422
    code = "key_mismatch"


class TargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


def profile(row: Participant) -> wire.Participant:
    return wire.Participant(
        key_id=row.key_id,
        display_name=row.display_name,
        role=row.role,
        status=row.status,
        public_key=row.public_key,
        registered_at=row.registered_at,
    )


def principal_profile(principal: Principal) -> wire.Participant:
    return wire.Participant(
        key_id=principal.key_id,
        display_name=principal.display_name,
        role=principal.role.value,
        status=principal.status.value,
        public_key=principal.public_key_pem,
        registered_at=None,
    )


def public_profile(session: Session, operators: Operators, key_id: str) -> wire.Participant:
    if key_id in operators:
        return principal_profile(operators.principal(key_id))
    row = session.get(Participant, key_id)
    if row is None:
        raise ParticipantNotFoundError(f"no participant has key id {key_id}")
    return profile(row)


def register(
    session: Session,
    body: ActionRequest,
    operators: Operators,
    skew_s: int,
    log_key: SM2PrivateKey,
) -> tuple[wire.Participant, Accepted]:
    """``participant.registered``: the record is signed by the key it registers
    (proof of possession). Providers and assessors start unverified, buyers and
    auditors active."""
    try:
        record = SignedRecord.from_dict(body.record).record
    except RecordFormatError as exc:
        raise InvalidRecordError(f"malformed record: {exc}") from None
    if record.type != "participant.registered":
        raise WrongRecordTypeError(
            f"this endpoint takes a participant.registered record, not {record.type}"
        )
    payload_json = record.payload
    pem = payload_json.get("public_key")
    if not isinstance(pem, str):
        raise InvalidPayloadError("payload.public_key: an SM2 public key PEM is required")
    try:
        key = SM2PublicKey.from_pem(pem)
    except KeyFormatError as exc:
        raise InvalidPayloadError(f"payload.public_key: {exc}") from None
    actor = record.actor
    if key.key_id() != actor:
        raise KeyMismatchError(
            f"the record's actor {actor} must be the key being registered ({key.key_id()})"
        )
    action = check_action(
        body,
        record_type="participant.registered",
        public_key=key,
        signer=None,
        skew_s=skew_s,
    )
    payload = payload_of(action, RegisteredPayload)
    key_id = key.key_id()
    timestamp = action.signed.record.timestamp

    def stage() -> Participant:
        if key_id in operators or session.get(Participant, key_id) is not None:
            raise AlreadyRegisteredError(f"key {key_id} is already registered")
        row = Participant(
            key_id=key_id,
            display_name=payload.display_name,
            role=payload.role,
            status=(
                ParticipantStatus.UNVERIFIED
                if Role(payload.role) in APPROVED_ROLES
                else ParticipantStatus.ACTIVE
            ),
            public_key=key.to_pem().decode("ascii"),
            registered_at=timestamp,
            updated_at=timestamp,
        )
        session.add(row)
        return row

    row, accepted = commit_with_record(session, action, log_key, stage)
    return profile(row), accepted


def _operator_action(
    session: Session,
    body: ActionRequest,
    operator: Principal,
    target: str,
    record_type: str,
    model: type[_P],
    operators: Operators,
    skew_s: int,
) -> tuple[SignedAction, _P, Participant]:
    action = check_action(
        body,
        record_type=record_type,
        public_key=operators[operator.key_id],
        signer=operator.key_id,
        skew_s=skew_s,
    )
    payload = payload_of(action, model)
    if payload.participant != target:
        raise TargetMismatchError(
            f"the record names participant {payload.participant}, the request {target}"
        )
    row = session.get(Participant, target)
    if row is None:
        raise ParticipantNotFoundError(f"no participant has key id {target}")
    return action, payload, row


def approve(
    session: Session,
    body: ActionRequest,
    operator: Principal,
    target: str,
    operators: Operators,
    skew_s: int,
    log_key: SM2PrivateKey,
) -> tuple[wire.Participant, Accepted]:
    """``participant.approved``: an unverified provider or assessor becomes active."""
    action, _, row = _operator_action(
        session, body, operator, target, "participant.approved", ApprovedPayload, operators, skew_s
    )

    def stage() -> Participant:
        if Role(row.role) not in APPROVED_ROLES or row.status != ParticipantStatus.UNVERIFIED:
            raise InvalidTransitionError(
                "only an unverified provider or assessor can be approved; this is a "
                f"{row.status} {row.role}"
            )
        row.status = ParticipantStatus.ACTIVE
        row.updated_at = action.signed.record.timestamp
        return row

    changed, accepted = commit_with_record(session, action, log_key, stage)
    return profile(changed), accepted


def suspend(
    session: Session,
    body: ActionRequest,
    operator: Principal,
    target: str,
    operators: Operators,
    skew_s: int,
    log_key: SM2PrivateKey,
) -> tuple[wire.Participant, Accepted]:
    """``participant.suspended``: refused everywhere from now on (403)."""
    action, payload, row = _operator_action(
        session,
        body,
        operator,
        target,
        "participant.suspended",
        SuspendedPayload,
        operators,
        skew_s,
    )

    def stage() -> Participant:
        if row.status == ParticipantStatus.SUSPENDED:
            raise InvalidTransitionError("the participant is already suspended")
        row.status = ParticipantStatus.SUSPENDED
        row.suspension_reason = payload.reason
        row.updated_at = action.signed.record.timestamp
        return row

    changed, accepted = commit_with_record(session, action, log_key, stage)
    return profile(changed), accepted
