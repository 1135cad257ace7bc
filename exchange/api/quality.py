"""Quality reports over REST (docs/quality.md): a provider's or assessor's signed
``quality.reported``, an assessor's ``quality.countersigned``, and reading a
listing's reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from exchange.api.deps import (
    AuthenticatorDep,
    LogKeyDep,
    OptionalParticipant,
    SessionDep,
    require_role,
)
from exchange.api.examples import data, json_body, ok
from exchange.api.params import ListingIdPath
from exchange.api.responses import error_responses, signed_errors
from exchange.participants.models import Principal, Role
from exchange.quality import service
from exchange.quality.schemas import QualityCountersignedOut, QualityReportedOut, QualityView
from exchange.records import ActionRequest, check_action
from ledger.protocol.quality import QUALITY_COUNTERSIGNED, QUALITY_REPORTED
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/listings", tags=["quality"])

ProviderOrAssessor = Annotated[Principal, Depends(require_role(Role.PROVIDER, Role.ASSESSOR))]
Assessor = Annotated[Principal, Depends(require_role(Role.ASSESSOR))]
ReportPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The report's SM3 (hex).")]


def _ok(status: int, name: str) -> dict[int | str, dict[str, Any]]:
    """``ok`` once ``make examples`` has recorded ``name`` (tools/openapi_examples' story
    plays these endpoints); nothing until then, so the app starts without them."""
    return ok(status, name) if name in data()["responses"] else {}


def _body(name: str) -> dict[str, Any]:
    return json_body(name) if name in data()["requests"] else {}


_SIGNED_422 = "invalid_request, wrong_record_type, stale_record, invalid_payload, target_mismatch"


@router.post(
    "/{listing_id}/quality-reports",
    status_code=201,
    response_model=QualityReportedOut,
    summary="Publish a signed quality report on a listing version (its providers; assessors)",
    responses={
        **_ok(201, "report_quality"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch, not_a_provider, assessor_unverified",
                404: "listing_not_found",
                409: "report_exists, countersign_instead, duplicate_record",
                422: f"{_SIGNED_422}, version_not_found, report_digest_mismatch, "
                "report_mismatch (content_sm3, byte_size, update_frequency or the schema's "
                "fields are not the version's)",
            }
        ),
    },
    openapi_extra=_body("report_quality"),
)
def report_quality(
    listing_id: ListingIdPath,
    body: ActionRequest,
    principal: ProviderOrAssessor,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> QualityReportedOut:
    """A `quality.reported` record: `{"listing_id", "version", "report", "report_sm3"}`,
    the report computed where the data lives (`clients.quality.compute_report`),
    `report_sm3` the SM3 of its canonical bytes. Signed by a provider of the listing,
    or by an assessor whose recomputation gave a different report."""
    action = check_action(
        body,
        record_type=QUALITY_REPORTED,
        public_key=SM2PublicKey.from_pem(principal.public_key_pem),
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    return service.report(session, action, principal, listing_id, log_key)


@router.post(
    "/{listing_id}/quality-reports/{report_sm3}/countersignatures",
    status_code=201,
    response_model=QualityCountersignedOut,
    summary="Countersign a provider's quality report after recomputing it (assessors)",
    responses={
        **_ok(201, "countersign_quality"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch, assessor_unverified",
                404: "listing_not_found, report_not_found",
                409: "already_countersigned, duplicate_record",
                422: _SIGNED_422,
            }
        ),
    },
    openapi_extra=_body("countersign_quality"),
)
def countersign_quality(
    listing_id: ListingIdPath,
    report_sm3: ReportPath,
    body: ActionRequest,
    principal: Assessor,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> QualityCountersignedOut:
    """A `quality.countersigned` record by an active assessor: `{"listing_id", "version",
    "report_sm3"}`, naming a provider's report on that version."""
    action = check_action(
        body,
        record_type=QUALITY_COUNTERSIGNED,
        public_key=SM2PublicKey.from_pem(principal.public_key_pem),
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    return service.countersign(session, action, principal, listing_id, report_sm3, log_key)


@router.get(
    "/{listing_id}/quality",
    response_model=QualityView,
    summary="A listing's quality: its reports, signers, grade and countersignatures",
    responses={
        **_ok(200, "get_quality"),
        **error_responses(
            {
                401: "unauthenticated, unknown_key, signature_invalid, stale_signature, "
                "replayed_nonce, digest_mismatch",
                403: "participant_suspended",
                404: "listing_not_found (also for a listing you may not see)",
                422: "invalid_request",
            }
        ),
    },
)
def get_quality(
    listing_id: ListingIdPath, principal: OptionalParticipant, session: SessionDep
) -> QualityView:
    return service.quality_of(session, listing_id, principal)
