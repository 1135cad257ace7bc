"""Participants over REST: register (proof of possession), profiles, operator
approval and suspension. Every state change is a client-signed record stored in
the log in the same transaction; the response carries its promise."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from exchange.api.deps import (
    AuthenticatorDep,
    CurrentParticipant,
    LogKeyDep,
    OperatorsDep,
    SessionDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.responses import error_responses
from exchange.participants import service
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest, log_receipt
from ledger.protocol.participant import Participant, ParticipantChanged

__all__ = ["router"]

router = APIRouter(prefix="/participants", tags=["participants"])

KeyIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{64}$", description="Key id: hex SM3 of the DER SPKI.")
]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]

_AUTH_ERRORS = {
    401: "unauthenticated, unknown_key, signature_invalid, stale_signature, "
    "replayed_nonce or digest_mismatch",
    403: "participant_suspended, role_forbidden, or actor_mismatch (the record is not "
    "by the request's signer)",
}
_RECORD_ERRORS = {
    400: "invalid_record (malformed signed record) or invalid_signature (the record's "
    "SM2 signature does not verify)",
    409: "duplicate_record (this signed record was already used) or concurrent_update",
    422: "invalid_request, wrong_record_type, stale_record, invalid_payload",
}


def errors(*parts: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    merged: dict[int, str] = {}
    for part in parts:
        for status, text in part.items():
            merged[status] = f"{merged[status]}, {text}" if status in merged else text
    return error_responses(merged)


@router.post(
    "",
    status_code=201,
    response_model=ParticipantChanged,
    summary="Register a participant (provider, buyer or auditor)",
    responses={
        **ok(201, "register"),
        **errors(
            {400: _RECORD_ERRORS[400], 409: "already_registered, duplicate_record"},
            {422: _RECORD_ERRORS[422] + ", key_mismatch (actor is not the key registered)"},
        ),
    },
    openapi_extra=json_body("register"),
)
def register(
    body: ActionRequest, session: SessionDep, authenticator: AuthenticatorDep, log_key: LogKeyDep
) -> ParticipantChanged:
    """Unauthenticated, but the body is a ``participant.registered`` record signed by
    the key being registered (proof of possession). Providers start ``unverified``
    until an operator approves them; buyers and auditors start ``active``."""
    participant, accepted = service.register(
        session, body, authenticator.operators, authenticator.skew_s, log_key
    )
    return ParticipantChanged(participant=participant, log=log_receipt(accepted))


@router.get(
    "/me",
    response_model=Participant,
    summary="The authenticated participant",
    responses={
        **ok(200, "me"),
        **errors({401: _AUTH_ERRORS[401], 403: "participant_suspended"}),
    },
)
def me(principal: CurrentParticipant, session: SessionDep, operators: OperatorsDep) -> Participant:
    return service.public_profile(session, operators, principal.key_id)


@router.get(
    "/{key_id}",
    response_model=Participant,
    summary="A participant's public profile",
    responses={
        **ok(200, "get_participant"),
        **errors({404: "participant_not_found", 422: "invalid_request"}),
    },
)
def get_participant(key_id: KeyIdPath, session: SessionDep, operators: OperatorsDep) -> Participant:
    """Public: anyone may read a key's display name, role and status."""
    return service.public_profile(session, operators, key_id)


@router.post(
    "/{key_id}/approve",
    response_model=ParticipantChanged,
    summary="Approve an unverified provider (operators)",
    responses={
        **ok(200, "approve"),
        **errors(
            _AUTH_ERRORS,
            _RECORD_ERRORS,
            {404: "participant_not_found", 409: "invalid_transition (not an unverified provider)"},
            {422: "target_mismatch"},
        ),
    },
    openapi_extra=json_body("approve"),
)
def approve(
    key_id: KeyIdPath,
    body: ActionRequest,
    operator: Operator,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> ParticipantChanged:
    """Body: a ``participant.approved`` record ``{"participant": key_id}``, signed by
    the operator."""
    participant, accepted = service.approve(
        session, body, operator, key_id, authenticator.operators, authenticator.skew_s, log_key
    )
    return ParticipantChanged(participant=participant, log=log_receipt(accepted))


@router.post(
    "/{key_id}/suspend",
    response_model=ParticipantChanged,
    summary="Suspend a participant (operators)",
    responses={
        **ok(200, "suspend"),
        **errors(
            _AUTH_ERRORS,
            _RECORD_ERRORS,
            {404: "participant_not_found", 409: "invalid_transition (already suspended)"},
            {422: "target_mismatch"},
        ),
    },
    openapi_extra=json_body("suspend"),
)
def suspend(
    key_id: KeyIdPath,
    body: ActionRequest,
    operator: Operator,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> ParticipantChanged:
    """Body: a ``participant.suspended`` record ``{"participant", "reason"}`` signed by
    the operator. A suspended participant is refused (403) on every endpoint."""
    participant, accepted = service.suspend(
        session, body, operator, key_id, authenticator.operators, authenticator.skew_s, log_key
    )
    return ParticipantChanged(participant=participant, log=log_receipt(accepted))
