"""Issuing certificates with the publication that causes them, applying their
lifecycle records, and reading them.

Issuance (:func:`issuance`): the exchange signs ``certificate.issued`` with the log
key and the listing's publication (``listing.published`` or
``listing.version_added``) stores it in the same batch item, through
:func:`exchange.records.commit_with_records`: a published version always has its
certificate, and a refused publication leaves neither. The number
``SC-<year>-<seq>`` takes the next ``seq`` of the year; a statement run inside the
log's write transaction re-checks that it is still the next one (else 409
``certificate_number_taken``, and :func:`numbered` signs a new record with the
next number and tries again), and ``(year, seq)`` is unique: numbers are
gap-free and never given twice, with any number of requests and processes.

A new version's certificate carries the rights and scope of the listing's latest
certificate (transfers and changes carry over); the first one gives every right
to the listing's providers with their revenue shares.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select
from sqlmodel import Session, col

from exchange.certificates import lifecycle
from exchange.certificates.errors import (
    CertificateCancelledError,
    CertificateExpiredError,
    CertificateNotFoundError,
    NumberTakenError,
    TargetMismatchError,
    UnknownParticipantError,
    WrongRecordTypeError,
)
from exchange.certificates.models import Certificate, CertificateEvent, CertificateState
from exchange.certificates.schemas import (
    RIGHTS,
    CertificateChanged,
    CertificatePublic,
    CertificateRecordRef,
    CertificateView,
    IssuedPayload,
    TransferOfferedPayload,
)
from exchange.log.batch import run_at_commit
from exchange.log.models import LogEntry
from exchange.participants.models import Participant, ParticipantStatus, Principal, Role
from exchange.records import (
    ActionRequest,
    InvalidRecordError,
    SignedAction,
    check_action,
    commit_with_record,
    exchange_action,
    log_receipt,
    payload_of,
)
from ledger.records import RecordFormatError, SignedRecord
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "DEFAULT_VALIDITY_S",
    "CertificateContext",
    "Issuance",
    "check_orderable",
    "current_number",
    "current_numbers",
    "issuance",
    "listing_certificates",
    "numbered",
    "record",
    "view",
]

DEFAULT_VALIDITY_S = 3 * 365 * 86_400
"""A certificate is valid for three years from its issue unless renewed."""

NUMBER_TRIES = 20
"""How often a publication is retried when racing ones take its number first."""

RECEIVING_ROLES = (Role.PROVIDER.value, Role.BUYER.value)
"""Who may receive a right: a registered provider or buyer (not suspended)."""

_T = TypeVar("_T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_number(year: int, seq: int) -> str:
    return f"SC-{year:04d}-{seq:06d}"


def _year(ms: int) -> int:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).year


def _last_seq(connection: Connection, year: int) -> int:
    value = connection.execute(
        select(func.max(col(Certificate.seq))).where(col(Certificate.year) == year)
    ).scalar_one()
    return int(value or 0)


# --------------------------------------------------------------------------- issuance


@dataclass(frozen=True, slots=True)
class Issuance:
    """A ``certificate.issued`` record signed by the exchange and the rows it stores."""

    action: SignedAction
    certificate: Certificate
    event: CertificateEvent

    def stage(self, session: Session) -> None:
        session.add(self.certificate)
        session.add(self.event)

    @contextmanager
    def number_guard(self, session: Session) -> Iterator[None]:
        """While staging in this block: the number must still be the year's next one
        when the change is written (409 ``certificate_number_taken`` otherwise)."""
        year, seq = self.certificate.year, self.certificate.seq

        def still_next(connection: Connection) -> None:
            last = _last_seq(connection, year)
            if last != seq - 1:
                raise NumberTakenError(
                    f"certificate number {format_number(year, seq)} was taken; the next is "
                    f"{format_number(year, last + 1)}"
                )

        with run_at_commit(session, still_next):
            yield


def _latest(session: Session, listing_id: str) -> Certificate | None:
    return (
        session.execute(
            select(Certificate)
            .where(col(Certificate.listing_id) == listing_id)
            .order_by(col(Certificate.version).desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def issuance(
    session: Session,
    log_key: SM2PrivateKey,
    *,
    listing_id: str,
    version: int,
    title: str,
    content_digest: str,
    row_root: str | None,
    providers: Sequence[tuple[str, int]],
    scope: dict[str, Any],
    validity_s: int,
) -> Issuance:
    """The certificate of ``listing_id`` at ``version``, numbered and signed now.

    Raises 409 ``certificate_cancelled`` when the listing's latest certificate was
    cancelled (a cancelled registration is not renewed by a new version)."""
    now = now_ms()
    year = _year(now)
    seq = _last_seq(session.connection(), year) + 1
    latest = _latest(session, listing_id)
    if latest is not None and latest.state == CertificateState.CANCELLED:
        raise CertificateCancelledError(
            f"certificate {latest.number} of listing {listing_id} is cancelled"
        )
    if latest is not None:
        rights = {right: [dict(h) for h in latest.rights[right]] for right in RIGHTS}
        scope = dict(latest.scope)
    else:
        holders = [{"participant": key, "share_bps": bps} for key, bps in providers]
        rights = {right: [dict(h) for h in holders] for right in RIGHTS}
    payload = IssuedPayload.model_validate(
        {
            "number": format_number(year, seq),
            "listing_id": listing_id,
            "version": version,
            "title": title,
            "content_digest": content_digest,
            "row_root": row_root,
            "rights": rights,
            "scope": scope,
            "valid_from": now,
            "valid_until": now + validity_s * 1000,
        }
    )
    body = payload.model_dump(mode="json")
    action = exchange_action(log_key, lifecycle.ISSUED, body)
    certificate = Certificate(
        number=payload.number,
        year=year,
        seq=seq,
        listing_id=listing_id,
        version=version,
        title=title,
        content_digest=content_digest,
        row_root=row_root,
        rights=body["rights"],
        scope=body["scope"],
        valid_from=payload.valid_from,
        valid_until=payload.valid_until,
        state=CertificateState.ACTIVE.value,
        pending=None,
        issued_at=now,
        updated_at=now,
    )
    event = CertificateEvent(
        number=payload.number,
        position=0,
        record_type=lifecycle.ISSUED,
        actor_key_id=log_key.key_id(),
        leaf_hash=action.submission.leaf_hash.hex(),
        at=now,
    )
    return Issuance(action, certificate, event)


def numbered(attempt: Callable[[], _T]) -> _T:
    """``attempt()`` (a publication with its certificate), again with a fresh number
    while racing publications take the number first (at most :data:`NUMBER_TRIES`)."""
    for _ in range(NUMBER_TRIES - 1):
        try:
            return attempt()
        except NumberTakenError:
            continue
    return attempt()


# --------------------------------------------------------------------------- orders


def check_orderable(connection: Connection, listing_id: str, version: int, now: int) -> None:
    """Refuse to quote or order a listing version whose certificate is cancelled (409
    ``certificate_cancelled``) or expired (409 ``certificate_expired``). A version
    published before certificates existed has none and is not refused. Run inside
    the order's transaction too: a cancellation commits under the same lock."""
    row = connection.execute(
        select(col(Certificate.number), col(Certificate.state), col(Certificate.valid_until))
        .where(col(Certificate.listing_id) == listing_id)
        .where(col(Certificate.version) == version)
    ).first()
    if row is None:
        return
    number, state, valid_until = row
    if state == CertificateState.CANCELLED:
        raise CertificateCancelledError(
            f"certificate {number} of listing {listing_id} v{version} is cancelled (注销)"
        )
    if now >= valid_until:
        raise CertificateExpiredError(
            f"certificate {number} of listing {listing_id} v{version} expired at "
            f"{valid_until}; its holders must renew it"
        )


# --------------------------------------------------------------------------- reading


def certificate_public(row: Certificate, now: int | None = None) -> CertificatePublic:
    at = now_ms() if now is None else now
    return CertificatePublic(
        number=row.number,
        listing_id=row.listing_id,
        version=row.version,
        title=row.title,
        content_digest=row.content_digest,
        row_root=row.row_root,
        rights={right: [dict(h) for h in row.rights[right]] for right in RIGHTS},
        scope=dict(row.scope),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        state=row.state,
        expired=at >= row.valid_until,
        pending=None if row.pending is None else dict(row.pending),
        issued_at=row.issued_at,
        updated_at=row.updated_at,
    )


def _get(session: Session, number: str) -> Certificate:
    row = session.get(Certificate, number)
    if row is None:
        raise CertificateNotFoundError(f"no certificate {number}")
    return row


def _history(session: Session, number: str) -> list[CertificateRecordRef]:
    events = (
        session.execute(
            select(CertificateEvent)
            .where(col(CertificateEvent.number) == number)
            .order_by(col(CertificateEvent.position))
        )
        .scalars()
        .all()
    )
    hashes = [bytes.fromhex(e.leaf_hash) for e in events]
    indexes = {
        bytes(leaf).hex(): int(index)
        for leaf, index in session.execute(
            select(col(LogEntry.leaf_hash), col(LogEntry.index)).where(
                col(LogEntry.leaf_hash).in_(hashes)
            )
        ).all()
    }
    return [
        CertificateRecordRef(
            index=indexes[e.leaf_hash],
            type=e.record_type,
            actor=e.actor_key_id,
            leaf_hash=e.leaf_hash,
            at=e.at,
        )
        for e in events
    ]


def view(session: Session, number: str) -> CertificateView:
    row = _get(session, number)
    return CertificateView(certificate=certificate_public(row), history=_history(session, number))


def listing_certificates(session: Session, listing_id: str) -> list[CertificatePublic]:
    rows = (
        session.execute(
            select(Certificate)
            .where(col(Certificate.listing_id) == listing_id)
            .order_by(col(Certificate.version))
        )
        .scalars()
        .all()
    )
    now = now_ms()
    return [certificate_public(row, now) for row in rows]


def current_number(session: Session, listing_id: str, version: int) -> str | None:
    """The number of the certificate of ``listing_id`` at ``version``, if any."""
    return current_numbers(session, [(listing_id, version)]).get((listing_id, version))


def current_numbers(
    session: Session, versions: Collection[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """:func:`current_number` of each ``(listing_id, version)`` that has one, in one query."""
    wanted = set(versions)
    if not wanted:
        return {}
    rows = session.execute(
        select(
            col(Certificate.listing_id), col(Certificate.version), col(Certificate.number)
        ).where(col(Certificate.listing_id).in_(sorted({lid for lid, _ in wanted})))
    ).all()
    return {
        (listing_id, version): str(number)
        for listing_id, version, number in rows
        if (listing_id, version) in wanted
    }


# --------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True, slots=True)
class CertificateContext:
    """What a lifecycle record needs: the session, the signer, keys and skew."""

    session: Session
    principal: Principal
    public_key: SM2PublicKey
    log_key: SM2PrivateKey
    skew_s: int


def _record_type(body: ActionRequest) -> str:
    try:
        signed = SignedRecord.from_dict(body.record)
    except RecordFormatError as exc:
        raise InvalidRecordError(f"malformed record: {exc}") from None
    record_type = signed.record.type
    if record_type not in lifecycle.TRANSITIONS:
        raise WrongRecordTypeError(
            f"this endpoint takes a certificate lifecycle record "
            f"({', '.join(sorted(lifecycle.TRANSITIONS))}), not {record_type}"
        )
    return record_type


def _check_receiver(session: Session, key_id: str) -> None:
    row = session.get(Participant, key_id)
    if (
        row is None
        or row.role not in RECEIVING_ROLES
        or row.status == ParticipantStatus.SUSPENDED.value
    ):
        raise UnknownParticipantError(
            f"{key_id} is not a registered provider or buyer in good standing"
        )


def record(ctx: CertificateContext, number: str, body: ActionRequest) -> CertificateChanged:
    """Apply one lifecycle record to certificate ``number`` (see
    :mod:`exchange.certificates.lifecycle`); nothing is stored when it is refused."""
    session = ctx.session
    record_type = _record_type(body)
    action = check_action(
        body,
        record_type=record_type,
        public_key=ctx.public_key,
        signer=ctx.principal.key_id,
        skew_s=ctx.skew_s,
    )
    payload = payload_of(action, lifecycle.TRANSITIONS[record_type].payload)
    target = getattr(payload, "number", "")
    if target != number:
        raise TargetMismatchError(f"the record names certificate {target}, the request {number}")
    cert = _get(session, number)
    actor = ctx.principal.key_id
    lifecycle.check_signer(cert, record_type, payload, actor, ctx.principal.is_operator)
    lifecycle.check_payload(cert, record_type, payload, actor)
    if isinstance(payload, TransferOfferedPayload):
        _check_receiver(session, payload.to)
    at = action.signed.record.timestamp
    position = session.execute(
        select(func.count())
        .select_from(CertificateEvent)
        .where(col(CertificateEvent.number) == number)
    ).scalar_one()

    def stage() -> Certificate:
        lifecycle.apply(cert, record_type, payload, actor, at)
        session.add(
            CertificateEvent(
                number=number,
                position=int(position),
                record_type=record_type,
                actor_key_id=actor,
                leaf_hash=action.submission.leaf_hash.hex(),
                at=at,
            )
        )
        return cert

    row, accepted = commit_with_record(session, action, ctx.log_key, stage)
    return CertificateChanged(certificate=certificate_public(row), log=log_receipt(accepted))
