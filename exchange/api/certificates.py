"""Registration certificates over REST (docs/certificates.md).

``GET /certificates/{number}`` (public): the certificate and its history (the log
index of each of its records: ``GET /receipts/{index}`` proves it);
``GET /certificates?listing=`` (public): the certificates of a listing's versions;
``POST /certificates/{number}/records``: one lifecycle record (its ``type`` picks
the transition of exchange/certificates/lifecycle.py: holders request, receivers
accept, operators review), answered with the certificate and the log's promise.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from exchange.api.deps import (
    AuthenticatorDep,
    LogKeyDep,
    OptionalParticipant,
    SessionDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.params import UUID_PATTERN
from exchange.api.responses import error_responses
from exchange.certificates import service
from exchange.certificates.schemas import (
    NUMBER_PATTERN,
    CertificateChanged,
    CertificateList,
    CertificateView,
)
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/certificates", tags=["certificates"])

Signer = Annotated[Principal, Depends(require_role(Role.PROVIDER, Role.BUYER, Role.OPERATOR))]
NumberPath = Annotated[
    str,
    Path(
        pattern=NUMBER_PATTERN,
        description="SC-<year of issue>-<sequence from 000001, gap-free per year>.",
        examples=["SC-2026-000001"],
    ),
]

_READ_ERRORS = {
    401: "unauthenticated, unknown_key, signature_invalid, stale_signature, replayed_nonce, "
    "digest_mismatch",
    403: "participant_suspended",
    422: "invalid_request",
}


@router.post(
    "/{number}/records",
    response_model=CertificateChanged,
    summary="A lifecycle record of a certificate: a holder's request, the receiver's "
    "acceptance or an operator's review",
    responses={
        **ok(200, "certificate_record"),
        **error_responses(
            {
                400: "invalid_record, invalid_signature",
                401: _READ_ERRORS[401],
                403: "participant_suspended, role_forbidden, actor_mismatch, not_holder, "
                "not_right_holder, not_receiver, operator_only",
                404: "certificate_not_found",
                409: "invalid_certificate_state, duplicate_record, concurrent_update",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "target_mismatch, invalid_shares, invalid_transfer, invalid_validity, "
                "unknown_participant",
            }
        ),
    },
    openapi_extra=json_body("certificate_record"),
)
def certificate_record(
    number: NumberPath,
    body: ActionRequest,
    principal: Signer,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> CertificateChanged:
    """Record types: ``certificate.change_requested``, ``certificate.transfer_offered``,
    ``certificate.renewal_requested``, ``certificate.cancellation_requested`` (a
    holder), ``certificate.transfer_accepted`` (the receiver), ``certificate.changed``,
    ``certificate.transfer_approved``, ``certificate.transfer_rejected``,
    ``certificate.renewed``, ``certificate.cancelled`` (an operator)."""
    if principal.is_operator:
        key = authenticator.operators[principal.key_id]
    else:
        key = SM2PublicKey.from_pem(principal.public_key_pem)
    ctx = service.CertificateContext(
        session=session,
        principal=principal,
        public_key=key,
        log_key=log_key,
        skew_s=authenticator.skew_s,
    )
    return service.record(ctx, number, body)


@router.get(
    "/{number}",
    response_model=CertificateView,
    summary="A certificate and its history (public)",
    responses={
        **ok(200, "get_certificate"),
        **error_responses({**_READ_ERRORS, 404: "certificate_not_found"}),
    },
)
def get_certificate(
    number: NumberPath, _principal: OptionalParticipant, session: SessionDep
) -> CertificateView:
    """``history`` lists the certificate's records in order, each with its log index."""
    return service.view(session, number)


@router.get(
    "",
    response_model=CertificateList,
    summary="The certificates of a listing's versions (public)",
    responses={**ok(200, "list_certificates"), **error_responses(_READ_ERRORS)},
)
def list_certificates(
    _principal: OptionalParticipant,
    session: SessionDep,
    listing: Annotated[str, Query(pattern=UUID_PATTERN, description="A listing id.")],
) -> CertificateList:
    return CertificateList(items=service.listing_certificates(session, listing))
