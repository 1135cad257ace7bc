"""Withdrawals over REST (exchange.payouts): a participant asks to withdraw available
funds (``withdrawal.requested``, the amount held); an operator records it paid
(``withdrawal.paid``, with the outside transfer's reference) or rejected
(``withdrawal.rejected``, the amount available again). All three take an optional
``Idempotency-Key`` (they move money)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

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
from exchange.errors import ExchangeError
from exchange.idempotency import Idempotent, run_keyed
from exchange.participants.models import REGISTRABLE_ROLES, Principal, Role
from exchange.payouts import service
from exchange.payouts.models import WithdrawalState
from exchange.payouts.schemas import (
    WITHDRAWAL_PAID,
    WITHDRAWAL_REJECTED,
    WITHDRAWAL_REQUESTED,
    WithdrawalChanged,
    WithdrawalPage,
    WithdrawalPublic,
)
from exchange.records import ActionRequest, SignedAction, check_action
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/withdrawals", tags=["withdrawals"])

Withdrawer = Annotated[Principal, Depends(require_role(*REGISTRABLE_ROLES, Role.OPERATOR))]
"""A registered participant (from its own account) or an operator (the platform's fees)."""
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
WithdrawalIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="The withdrawal's UUID.")]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional; the same key and body return the stored response.",
    ),
]


class TargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


_WRITE_422 = (
    "invalid_request, wrong_record_type, stale_record, invalid_payload, "
    "invalid_idempotency_key, idempotency_key_reused"
)


@router.post(
    "",
    status_code=201,
    response_model=WithdrawalChanged,
    summary="Withdraw available funds; the amount is held until an operator pays it "
    "(registered participants; operators: the platform's fees)",
    responses={
        **ok(201, "request_withdrawal"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                402: "insufficient_funds",
                403: "actor_mismatch, platform_account",
                409: "withdrawal_exists, duplicate_record, concurrent_update",
                422: _WRITE_422,
            }
        ),
    },
    openapi_extra=json_body("request_withdrawal"),
)
def request_withdrawal(
    body: ActionRequest,
    principal: Withdrawer,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    idempotency_key: IdempotencyHeader = None,
) -> WithdrawalChanged | JSONResponse:
    """A ``withdrawal.requested`` record signed by the participant: ``{"withdrawal_id":
    <new UUID>, "amount": fen ≥ 1, "destination": "<where the money goes: bank
    account reference>"}``. The amount moves from your available balance to held (402
    ``insufficient_funds`` if available does not cover it) until an operator records
    it paid or rejected. An operator withdraws the exchange's fees with ``"account":
    "platform"`` added (and only those: 403 ``platform_account`` otherwise); another
    operator pays it out."""
    del idempotency_key  # read by Idempotent from the request (documented here)

    def effect(idempotent: Idempotent) -> WithdrawalChanged:
        action = check_action(
            body,
            record_type=WITHDRAWAL_REQUESTED,
            public_key=SM2PublicKey.from_pem(principal.public_key_pem),
            signer=principal.key_id,
            skew_s=authenticator.skew_s,
        )
        return service.request(session, action, log_key, idempotent, principal)

    return run_keyed(session, request, principal.key_id, body, service.rebuild_changed, effect)


@router.get(
    "",
    response_model=WithdrawalPage,
    summary="Withdrawals: operators see all, anyone else their own",
    responses={**ok(200, "list_withdrawals"), **signed_errors({422: "invalid_request"})},
)
def list_withdrawals(
    principal: CurrentParticipant,
    session: SessionDep,
    state: WithdrawalState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> WithdrawalPage:
    return service.list_withdrawals(session, principal, state=state, limit=limit, offset=offset)


@router.get(
    "/{withdrawal_id}",
    response_model=WithdrawalPublic,
    summary="A withdrawal (the participant who withdraws, operators)",
    responses={
        **ok(200, "get_withdrawal"),
        **signed_errors(
            {
                404: "withdrawal_not_found (also for a withdrawal you may not see)",
                422: "invalid_request",
            }
        ),
    },
)
def get_withdrawal(
    withdrawal_id: WithdrawalIdPath, principal: CurrentParticipant, session: SessionDep
) -> WithdrawalPublic:
    return service.get_withdrawal(session, principal, withdrawal_id)


_DECISION_ERRORS = {
    400: "invalid_record, invalid_signature",
    403: "actor_mismatch",
    404: "withdrawal_not_found",
    409: "withdrawal_decided, duplicate_record, concurrent_update",
    422: f"{_WRITE_422}, target_mismatch",
}


def _operator_action(
    body: ActionRequest,
    principal: Principal,
    authenticator: AuthenticatorDep,
    record_type: str,
    withdrawal_id: str,
) -> SignedAction:
    action = check_action(
        body,
        record_type=record_type,
        public_key=authenticator.operators[principal.key_id],
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    named = action.payload.get("withdrawal_id")
    if isinstance(named, str) and named != withdrawal_id:  # a malformed one: invalid_payload
        raise TargetMismatchError(
            f"the record names withdrawal {named}, the request {withdrawal_id}"
        )
    return action


@router.post(
    "/{withdrawal_id}/paid",
    response_model=WithdrawalChanged,
    summary="Record a pending withdrawal paid out (operators)",
    responses={
        **ok(200, "pay_withdrawal"),
        **signed_errors({**_DECISION_ERRORS, 403: "actor_mismatch, same_operator"}),
    },
    openapi_extra=json_body("pay_withdrawal"),
)
def pay_withdrawal(
    withdrawal_id: WithdrawalIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    idempotency_key: IdempotencyHeader = None,
) -> WithdrawalChanged | JSONResponse:
    """A ``withdrawal.paid`` record signed by an operator: ``{"withdrawal_id",
    "reference": "<the outside transfer's reference>"}``, once the money was sent.
    The held amount leaves the participant's account. A withdrawal is decided once
    (409 ``withdrawal_decided``). The platform's fees are paid out by another operator
    than the one who asked for them (403 ``same_operator``)."""
    del idempotency_key  # read by Idempotent from the request (documented here)

    def effect(idempotent: Idempotent) -> WithdrawalChanged:
        action = _operator_action(body, principal, authenticator, WITHDRAWAL_PAID, withdrawal_id)
        return service.pay(session, action, log_key, idempotent)

    return run_keyed(session, request, principal.key_id, body, service.rebuild_changed, effect)


@router.post(
    "/{withdrawal_id}/rejected",
    response_model=WithdrawalChanged,
    summary="Reject a pending withdrawal; its amount is available again (operators)",
    responses={**ok(200, "reject_withdrawal"), **signed_errors(_DECISION_ERRORS)},
    openapi_extra=json_body("reject_withdrawal"),
)
def reject_withdrawal(
    withdrawal_id: WithdrawalIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    idempotency_key: IdempotencyHeader = None,
) -> WithdrawalChanged | JSONResponse:
    """A ``withdrawal.rejected`` record signed by an operator: ``{"withdrawal_id",
    "reason"}`` (1 to 500 characters). The held amount returns to the participant's
    available balance. A withdrawal is decided once (409 ``withdrawal_decided``)."""
    del idempotency_key  # read by Idempotent from the request (documented here)

    def effect(idempotent: Idempotent) -> WithdrawalChanged:
        action = _operator_action(
            body, principal, authenticator, WITHDRAWAL_REJECTED, withdrawal_id
        )
        return service.reject(session, action, log_key, idempotent)

    return run_keyed(session, request, principal.key_id, body, service.rebuild_changed, effect)
