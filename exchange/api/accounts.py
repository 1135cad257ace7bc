"""Accounts over REST: operator deposits (``deposit.credited``) and balances.

``POST /accounts/{key_id}/deposits`` takes ``{"record": <deposit.credited
signed by an operator>}`` (payload ``{participant, amount, reference}``,
amount in fen) and an optional ``Idempotency-Key`` header.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from exchange.accounts import service
from exchange.accounts.schemas import AccountView, DepositCredited
from exchange.api.deps import (
    AuthenticatorDep,
    CurrentParticipant,
    LogKeyDep,
    SessionDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.responses import signed_errors
from exchange.idempotency import Idempotent, run
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest, check_action

__all__ = ["router"]

router = APIRouter(prefix="/accounts", tags=["accounts"])

KeyIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{64}$", description="Key id: hex SM3 of the DER SPKI.")
]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional; the same key and body return the stored response.",
    ),
]
AccountIdPath = Annotated[
    str,
    Path(
        pattern=r"^([0-9a-f]{64}|platform)$",
        description="A participant's key id, or `platform` for the exchange's fee account.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="Most recent movements to show.")]


@router.post(
    "/{key_id}/deposits",
    status_code=201,
    response_model=DepositCredited,
    summary="Credit a deposit to a participant's account (operators)",
    responses={
        **ok(201, "credit_deposit"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch",
                404: "participant_not_found",
                409: "duplicate_record, concurrent_update",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "target_mismatch, invalid_idempotency_key, idempotency_key_reused",
            }
        ),
    },
    openapi_extra=json_body("credit_deposit"),
)
def credit_deposit(
    key_id: KeyIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    idempotency_key: IdempotencyHeader = None,
) -> DepositCredited | JSONResponse:
    """A ``deposit.credited`` record signed by the operator: ``{"participant":
    key_id, "amount": fen ≥ 1, "reference": "bank transfer …"}``. The balance
    change, its ``deposit`` movement and the record commit together."""
    del idempotency_key  # read by Idempotent from the request (documented here)
    idempotent = Idempotent(request, principal.key_id, body)

    def effect() -> DepositCredited:
        action = check_action(
            body,
            record_type="deposit.credited",
            public_key=authenticator.operators[principal.key_id],
            signer=principal.key_id,
            skew_s=authenticator.skew_s,
        )
        return service.deposit(session, action, key_id, log_key, idempotent)

    return run(session, idempotent, lambda row: service.rebuild_deposit(session, row), effect)


@router.get(
    "/me",
    response_model=AccountView,
    summary="Your balances (available, held) and recent movements",
    responses={**ok(200, "my_account"), **signed_errors({422: "invalid_request"})},
)
def my_account(
    principal: CurrentParticipant, session: SessionDep, limit: Limit = 50
) -> AccountView:
    return service.account_view(session, principal.key_id, limit=limit)


@router.get(
    "/{key_id}",
    response_model=AccountView,
    summary="A participant's (or the platform's) balances and recent movements (operators)",
    responses={**ok(200, "participant_account"), **signed_errors({422: "invalid_request"})},
)
def participant_account(
    key_id: AccountIdPath, principal: Operator, session: SessionDep, limit: Limit = 50
) -> AccountView:
    del principal
    return service.account_view(session, key_id, limit=limit)
