"""Quality reports as signed records (docs/quality.md): a provider's
``quality.reported``, an assessor's ``quality.countersigned`` or its own differing
``quality.reported``. The exchange never computes a report (the data is not
here); it checks that a report is about the version's bytes and declared shape,
that its numbers give its grade, that the digest signed is the report's, and who
signs it.

Checks, in order (a refusal stores nothing):

* the payload parses (:class:`ledger.protocol.quality.QualityReported`: no
  floats, exact fields, bps/score/grade following from the counts; 422
  ``invalid_payload``) and names the path's listing (422 ``target_mismatch``);
* the listing exists and the signer may see it (404 ``listing_not_found``), the
  version exists (422 ``version_not_found``);
* ``report_sm3`` is the SM3 of the report's canonical bytes, which are those of
  its normal form (422 ``report_digest_mismatch``);
* the report is about that version: its ``content_sm3``/``byte_size`` are the
  version's, its ``update_frequency`` the listing's, its schema's fields the
  listing's columns, names and types (422 ``report_mismatch``);
* the signer is a provider of the listing (a provider's report), or an active
  assessor (403 ``not_a_provider`` / ``assessor_unverified``); an assessor reports
  only on a published listing and only a report that differs from the providers'
  (409 ``countersign_instead``);
* nobody signs the same report on the same version twice (409 ``report_exists``);
  an assessor countersigns an existing provider report (404 ``report_not_found``)
  once (409 ``already_countersigned``).
"""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from exchange.errors import ConflictError, ExchangeError, ForbiddenError, NotFoundError
from exchange.listings import search
from exchange.listings.models import Listing, ListingProvider, ListingState, ListingVersion
from exchange.listings.quality import (
    QualityCountersignature,
    QualityReportRow,
    SignerRole,
    countersigners,
    quality_summary,
)
from exchange.log.batch import run_at_commit
from exchange.participants.models import ParticipantStatus, Principal, Role
from exchange.quality.schemas import (
    QualityCountersignedOut,
    QualityReportedOut,
    QualityReportPublic,
    QualityView,
)
from exchange.records import InvalidPayloadError, SignedAction, commit_with_record, log_receipt
from ledger.protocol.quality import QualityCountersigned, QualityReport, QualityReported
from ledger.records import RecordFormatError, canonical_json, thaw
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

__all__ = ["countersign", "quality_of", "report"]

_COLUMN_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "integer": ("integer",),
    "decimal": ("number",),
    "boolean": ("boolean",),
    "date": ("date",),
    "datetime": ("datetime",),
    "binary": ("string", "any"),
    "json": ("any",),
}
"""Table Schema types that may declare a listing column of each type."""


class QualityListingNotFoundError(NotFoundError):
    code = "listing_not_found"


class QualityTargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


class QualityVersionNotFoundError(ExchangeError):
    status = 422
    code = "version_not_found"


class ReportDigestMismatchError(ExchangeError):
    status = 422
    code = "report_digest_mismatch"


class ReportMismatchError(ExchangeError):
    status = 422
    code = "report_mismatch"


class NotAProviderError(ForbiddenError):
    code = "not_a_provider"


class AssessorUnverifiedError(ForbiddenError):
    code = "assessor_unverified"


class ReportExistsError(ConflictError):
    code = "report_exists"


class CountersignInsteadError(ConflictError):
    code = "countersign_instead"


class ReportNotFoundError(NotFoundError):
    code = "report_not_found"


class AlreadyCountersignedError(ConflictError):
    code = "already_countersigned"


def _listing(session: Session, listing_id: str, principal: Principal | None) -> Listing:
    row = session.get(Listing, listing_id)
    visible = row is not None and (
        row.state in (ListingState.PUBLISHED, ListingState.DELISTED)
        or (principal is not None and principal.is_operator)
        or (
            principal is not None
            and session.get(ListingProvider, (listing_id, principal.key_id)) is not None
        )
    )
    if row is None or not visible:
        raise QualityListingNotFoundError(f"no listing {listing_id}")
    return row


def _version(session: Session, listing: Listing, version: int) -> ListingVersion:
    row = session.get(ListingVersion, (listing.id, version))
    if row is None:
        raise QualityVersionNotFoundError(f"listing {listing.id} has no version {version}")
    return row


def _active_assessor(principal: Principal) -> None:
    if principal.status is not ParticipantStatus.ACTIVE:
        raise AssessorUnverifiedError("an operator must approve you before you assess")


def _check_about(listing: Listing, version: ListingVersion, report: QualityReport) -> None:
    def differ(field: str, expected: object, actual: object) -> ReportMismatchError:
        return ReportMismatchError(
            f"the report's {field} is {actual!r}; listing {listing.id} version "
            f"{version.version} has {expected!r}"
        )

    if report.content_sm3 != version.content_digest:
        raise differ("content_sm3", version.content_digest, report.content_sm3)
    if report.byte_size != version.byte_size:
        raise differ("byte_size", version.byte_size, report.byte_size)
    if report.update_frequency != listing.update_frequency:
        raise differ("update_frequency", listing.update_frequency, report.update_frequency)
    fields = [(f.name, f.type) for f in report.table_schema.fields]
    columns = [(str(c["name"]), str(c["type"])) for c in listing.columns]
    if [name for name, _ in fields] != [name for name, _ in columns]:
        raise differ("schema fields", [n for n, _ in columns], [n for n, _ in fields])
    for (name, declared), (_, column) in zip(fields, columns, strict=True):
        if declared not in _COLUMN_TYPES.get(column, ()):
            raise differ(f"type of field {name}", column, declared)


def _parsed_report(action: SignedAction) -> QualityReported:
    try:
        payload = QualityReported.from_dict(action.payload)
    except RecordFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None
    raw = action.payload["report"]
    if sm3(canonical_json(raw)).hex() != payload.report_sm3:
        raise ReportDigestMismatchError(
            f"report_sm3 {payload.report_sm3} is not the SM3 of the report's canonical bytes"
        )
    if payload.report_sm3 != payload.report.digest() or thaw(raw) != payload.report.to_dict():
        raise ReportDigestMismatchError(
            "the report is not in its normal form (ledger.protocol.quality.QualityReport."
            "to_dict), so its digest is not the report's"
        )
    return payload


def report(
    session: Session,
    action: SignedAction,
    principal: Principal,
    listing_id: str,
    log_key: SM2PrivateKey,
) -> QualityReportedOut:
    """Apply a checked ``quality.reported`` action (see the module docstring)."""
    payload = _parsed_report(action)
    if payload.listing_id != listing_id:
        raise QualityTargetMismatchError(
            f"the record names listing {payload.listing_id}, the request {listing_id}"
        )
    listing = _listing(session, listing_id, principal)
    version = _version(session, listing, payload.version)
    _check_about(listing, version, payload.report)
    is_provider = session.get(ListingProvider, (listing_id, principal.key_id)) is not None
    if principal.role is Role.ASSESSOR:
        _active_assessor(principal)
        if listing.state != ListingState.PUBLISHED:
            raise QualityListingNotFoundError(f"no published listing {listing_id}")
        if _provider_report(session, listing_id, payload.version, payload.report_sm3):
            raise CountersignInsteadError(
                "a provider signed this very report: countersign it instead"
            )
        role = SignerRole.ASSESSOR
    elif is_provider:
        role = SignerRole.PROVIDER
    else:
        raise NotAProviderError(f"only the providers of listing {listing_id} report its quality")
    if _signed_by(session, listing_id, payload.version, payload.report_sm3, principal.key_id):
        raise ReportExistsError(f"you already signed report {payload.report_sm3} on this version")
    record = action.signed.record
    row = QualityReportRow(
        leaf_hash=action.submission.leaf_hash.hex(),
        listing_id=listing_id,
        version=payload.version,
        report_sm3=payload.report_sm3,
        signer_key_id=record.actor,
        signer_role=role.value,
        grade=payload.report.grade,
        score_bps=payload.report.score_bps,
        report=payload.report.to_dict(),
        reported_at=record.timestamp,
    )

    def stage() -> QualityReportRow:
        session.add(row)
        return row

    def index_grade(connection: Connection) -> None:
        # under the log's write lock: the reports committed before this one count,
        # however many providers report at once (ledger's rule: the newest shows)
        search.set_current_grade(connection, listing_id, payload.version, row)

    if role is SignerRole.PROVIDER:
        with run_at_commit(session, index_grade):
            _, accepted = commit_with_record(session, action, log_key, stage)
    else:
        _, accepted = commit_with_record(session, action, log_key, stage)
    return QualityReportedOut(report=_public(session, row), log=log_receipt(accepted))


def _provider_report(session: Session, listing_id: str, version: int, digest: str) -> bool:
    return (
        session.execute(
            select(col(QualityReportRow.leaf_hash)).where(
                col(QualityReportRow.listing_id) == listing_id,
                col(QualityReportRow.version) == version,
                col(QualityReportRow.report_sm3) == digest,
                col(QualityReportRow.signer_role) == SignerRole.PROVIDER.value,
            )
        ).first()
        is not None
    )


def _signed_by(session: Session, listing_id: str, version: int, digest: str, key: str) -> bool:
    return (
        session.execute(
            select(col(QualityReportRow.leaf_hash)).where(
                col(QualityReportRow.listing_id) == listing_id,
                col(QualityReportRow.version) == version,
                col(QualityReportRow.report_sm3) == digest,
                col(QualityReportRow.signer_key_id) == key,
            )
        ).first()
        is not None
    )


def countersign(
    session: Session,
    action: SignedAction,
    principal: Principal,
    listing_id: str,
    report_sm3: str,
    log_key: SM2PrivateKey,
) -> QualityCountersignedOut:
    """Apply a checked ``quality.countersigned`` action by an assessor."""
    try:
        payload = QualityCountersigned.from_dict(action.payload)
    except RecordFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None
    if payload.listing_id != listing_id or payload.report_sm3 != report_sm3:
        raise QualityTargetMismatchError(
            f"the record names listing {payload.listing_id} report {payload.report_sm3}, the "
            f"request listing {listing_id} report {report_sm3}"
        )
    _active_assessor(principal)
    listing = _listing(session, listing_id, principal)
    if listing.state != ListingState.PUBLISHED:
        raise QualityListingNotFoundError(f"no published listing {listing_id}")
    if not _provider_report(session, listing_id, payload.version, report_sm3):
        raise ReportNotFoundError(
            f"no provider report {report_sm3} on listing {listing_id} version {payload.version}"
        )
    key = (listing_id, payload.version, report_sm3, principal.key_id)
    if session.get(QualityCountersignature, key) is not None:
        raise AlreadyCountersignedError(f"you already countersigned report {report_sm3}")
    record = action.signed.record
    row = QualityCountersignature(
        listing_id=listing_id,
        version=payload.version,
        report_sm3=report_sm3,
        assessor_key_id=record.actor,
        leaf_hash=action.submission.leaf_hash.hex(),
        countersigned_at=record.timestamp,
    )

    def stage() -> QualityCountersignature:
        session.add(row)
        return row

    _, accepted = commit_with_record(session, action, log_key, stage)
    return QualityCountersignedOut(
        listing_id=listing_id,
        version=payload.version,
        report_sm3=report_sm3,
        assessor=principal.key_id,
        log=log_receipt(accepted),
    )


def _public(session: Session, row: QualityReportRow) -> QualityReportPublic:
    return QualityReportPublic(
        report_sm3=row.report_sm3,
        listing_id=row.listing_id,
        version=row.version,
        signer=row.signer_key_id,
        signer_role=row.signer_role,
        grade=row.grade,
        score_bps=row.score_bps,
        reported_at=row.reported_at,
        leaf_hash=row.leaf_hash,
        countersigned_by=(
            countersigners(session, row.listing_id, row.version, row.report_sm3)
            if row.signer_role == SignerRole.PROVIDER.value
            else []
        ),
        report=row.report,
    )


def quality_of(session: Session, listing_id: str, principal: Principal | None) -> QualityView:
    """A listing's reports on every version, newest first, and its current quality."""
    listing = _listing(session, listing_id, principal)
    rows = session.execute(
        select(QualityReportRow)
        .where(col(QualityReportRow.listing_id) == listing_id)
        .order_by(
            col(QualityReportRow.version).desc(),
            col(QualityReportRow.reported_at).desc(),
            col(QualityReportRow.leaf_hash),
        )
        .limit(200)
    ).scalars()
    return QualityView(
        listing_id=listing_id,
        version=listing.version,
        quality=quality_summary(session, listing_id, listing.version),
        reports=[_public(session, row) for row in rows],
    )
