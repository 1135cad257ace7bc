"""Cross-border assessments over REST (数据出境安全评估, docs/policies.md).

``POST /crossborder-assessments`` takes ``{"record": <crossborder.assessed signed by
an operator>}`` (payload ``{listing_id, buyer, approved, reference, valid_until}``);
``GET /crossborder-assessments`` lists the current decisions a caller may see.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from exchange.api.deps import (
    AuthenticatorDep,
    CurrentParticipant,
    LogKeyDep,
    SessionDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.params import UUID_PATTERN
from exchange.api.responses import signed_errors
from exchange.participants.models import Principal, Role
from exchange.policies import service
from exchange.policies.schemas import AssessmentPage, AssessmentRecorded
from exchange.records import ActionRequest, check_action

__all__ = ["router"]

router = APIRouter(prefix="/crossborder-assessments", tags=["policies"])

Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]


@router.post(
    "",
    status_code=201,
    response_model=AssessmentRecorded,
    summary="Record a cross-border assessment for a buyer and listing (operators)",
    responses={
        **ok(201, "record_crossborder_assessment"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch",
                404: "listing_not_found, participant_not_found",
                409: "duplicate_record, concurrent_update",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload",
            }
        ),
    },
    openapi_extra=json_body("record_crossborder_assessment"),
)
def record_assessment(
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> AssessmentRecorded:
    """A ``crossborder.assessed`` record signed by the operator: ``{"listing_id",
    "buyer": key id, "approved": bool, "reference": "…", "valid_until": ms | null}``.
    It replaces the previous decision for that listing and buyer. While an approval
    holds, the buyer may order the listing (重要 data or personal information) for
    processing outside CN."""
    action = check_action(
        body,
        record_type="crossborder.assessed",
        public_key=authenticator.operators[principal.key_id],
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    return service.assess(session, action, log_key)


@router.get(
    "",
    response_model=AssessmentPage,
    summary="Cross-border assessments: all (operators), yours (buyers), your listings' (providers)",
    responses={
        **ok(200, "list_crossborder_assessments"),
        **signed_errors({422: "invalid_request"}),
    },
)
def list_assessments(
    principal: CurrentParticipant,
    session: SessionDep,
    listing_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
    buyer: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AssessmentPage:
    return service.list_assessments(
        session, principal, listing_id=listing_id, buyer=buyer, limit=limit, offset=offset
    )
