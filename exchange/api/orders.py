"""Orders over REST: place (``order.placed``, buyer-signed, escrow), read, list; and
their lifecycle (exchange.orders.lifecycle): accept (+ settlement), dispute,
resolve (operators), revoke (providers)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from exchange.api.deps import (
    AuthenticatorDep,
    CurrentParticipant,
    LogKeyDep,
    SessionDep,
    SettingsDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.params import OrderIdPath
from exchange.api.responses import signed_errors
from exchange.auth.verifier import Authenticator
from exchange.errors import ExchangeError
from exchange.idempotency import Idempotent, run, run_keyed
from exchange.orders import lifecycle, service
from exchange.orders.schemas import OrderChanged, OrderPage, OrderPlaced, OrderPublic
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest, SignedAction, check_action
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]


class TargetMismatchError(ExchangeError):
    status = 422
    code = "target_mismatch"


router = APIRouter(prefix="/orders", tags=["orders"])

Buyer = Annotated[Principal, Depends(require_role(Role.BUYER, Role.ASSESSOR))]
"""Buyers, and assessors on their assessment orders (exchange.orders.assessment)."""
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
Provider = Annotated[Principal, Depends(require_role(Role.PROVIDER))]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional; the same key and body return the stored response.",
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=OrderPlaced,
    summary="Place an order from a quote; the price moves into escrow (buyers)",
    responses={
        **ok(201, "place_order"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                402: "insufficient_funds",
                403: "actor_mismatch, assessment_forbidden (a zero-price assessment is an "
                "approved assessor's only order)",
                404: "listing_not_found",
                409: "quote_used, sold_out, quote_expired, listing_not_published, "
                "provider_suspended, order_exists, not_renewable, duplicate_record, "
                "concurrent_update, certificate_cancelled, certificate_expired",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "invalid_quote, invalid_quote_signature, quote_mismatch, invalid_terms, "
                "policy_violation (the body's clause names the policy clause broken), "
                "invalid_idempotency_key, idempotency_key_reused",
            }
        ),
    },
    openapi_extra=json_body("place_order"),
)
def place_order(
    body: ActionRequest,
    principal: Buyer,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OrderPlaced | JSONResponse:
    """An ``order.placed`` record signed by the buyer: ``{"order_id": <new UUID>,
    "quote": <the quote as issued>, "declaration": {"purpose", "processing_region",
    "legal_basis"}}``. The quote must be this exchange's, for you, unexpired, unused,
    and still match the listing's version, digest, price and usage policy; the
    declaration must comply with that policy and the cross-border rule (422
    ``policy_violation`` with ``clause``; docs/policies.md).

    A renewal adds ``"renews": <your earlier subscription order on this listing>``
    (not revoked, not refunded, not already renewed): the new paid period starts
    where that one ends, or now if it has ended."""
    del idempotency_key  # read by Idempotent from the request (documented here)
    idempotent = Idempotent(request, principal.key_id, body)

    def effect() -> OrderPlaced:
        action = check_action(
            body,
            record_type="order.placed",
            public_key=SM2PublicKey.from_pem(principal.public_key_pem),
            signer=principal.key_id,
            skew_s=authenticator.skew_s,
        )
        return service.place(session, action, log_key, idempotent)

    return run(session, idempotent, lambda row: service.rebuild_placed(session, row), effect)


@router.get(
    "/{order_id}",
    response_model=OrderPublic,
    summary="An order (its buyer, the listing's providers, operators)",
    responses={
        **ok(200, "get_order"),
        **signed_errors(
            {404: "order_not_found (also for an order you may not see)", 422: "invalid_request"}
        ),
    },
)
def get_order(
    order_id: OrderIdPath,
    principal: CurrentParticipant,
    session: SessionDep,
) -> OrderPublic:
    return service.get_order(session, principal, order_id)


@router.get(
    "",
    response_model=OrderPage,
    summary="Your orders: as buyer, or on your listings as provider",
    responses={**ok(200, "list_orders"), **signed_errors({422: "invalid_request"})},
)
def list_orders(
    principal: CurrentParticipant,
    session: SessionDep,
    role: Literal["buyer", "provider"] = "buyer",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> OrderPage:
    return service.list_orders(session, principal, role=role, limit=limit, offset=offset)


def _action(
    body: ActionRequest, principal: Principal, authenticator: Authenticator, record_type: str
) -> SignedAction:
    public_key = (
        authenticator.operators[principal.key_id]
        if principal.is_operator
        else SM2PublicKey.from_pem(principal.public_key_pem)
    )
    return check_action(
        body,
        record_type=record_type,
        public_key=public_key,
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )


_DECISION_409 = (
    "not_delivered, acceptance_closed, order_not_open, duplicate_record, concurrent_update"
)


@router.post(
    "/{order_id}/accept",
    response_model=OrderChanged,
    summary="Accept a delivered order; it is settled at once (its buyer)",
    responses={
        **ok(200, "accept_order"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch",
                404: "order_not_found",
                409: _DECISION_409,
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "target_mismatch, invalid_idempotency_key, idempotency_key_reused",
            }
        ),
    },
    openapi_extra=json_body("accept_order"),
)
def accept_order(
    order_id: OrderIdPath,
    body: ActionRequest,
    principal: Buyer,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyHeader = None,
) -> OrderChanged | JSONResponse:
    """An ``order.accepted`` record signed by the buyer: ``{"order_id"}``, while the
    order is delivered and before its ``acceptance_deadline``. In the same
    transaction the exchange settles: a ``settlement.paid`` record signed by its log
    key (``{order_id, amount, platform_fee, payouts, remainder_rule}``), the escrow
    released, each provider's share and the platform fee credited (docs/money.md)."""
    del idempotency_key  # read by Idempotent from the request (documented here)

    def effect(idempotent: Idempotent) -> OrderChanged:
        action = _action(body, principal, authenticator, "order.accepted")
        _check_target(action, order_id)
        return lifecycle.accept(session, action, log_key, settings, idempotent)

    return run_keyed(session, request, principal.key_id, body, lifecycle.rebuild_changed, effect)


@router.post(
    "/{order_id}/dispute",
    response_model=OrderChanged,
    summary="Dispute a delivered order; its escrow stays frozen (its buyer)",
    responses={
        **ok(200, "dispute_order"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch",
                404: "order_not_found",
                409: _DECISION_409,
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "target_mismatch",
            }
        ),
    },
    openapi_extra=json_body("dispute_order"),
)
def dispute_order(
    order_id: OrderIdPath,
    body: ActionRequest,
    principal: Buyer,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> OrderChanged:
    """An ``order.disputed`` record signed by the buyer: ``{"order_id", "reason"}``
    (1 to 1000 characters) and optionally ``"evidence"``: a JSON object of at most
    16 KiB canonical JSON, e.g. what the SDK's failed check found (``{"check":
    "range_proof", "expected": ..., "actual": ...}``), logged with the record. While
    the order is delivered and before its ``acceptance_deadline``. An operator then
    resolves it."""
    action = _action(body, principal, authenticator, "order.disputed")
    _check_target(action, order_id)
    return lifecycle.dispute(session, action, log_key)


@router.post(
    "/{order_id}/resolve",
    response_model=OrderChanged,
    summary="Resolve a dispute: refund the buyer or release to the providers (operators)",
    responses={
        **ok(200, "resolve_dispute"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch",
                404: "order_not_found",
                409: "not_disputed, duplicate_record, concurrent_update",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "target_mismatch, invalid_idempotency_key, idempotency_key_reused",
            }
        ),
    },
    openapi_extra=json_body("resolve_dispute"),
)
def resolve_dispute(
    order_id: OrderIdPath,
    body: ActionRequest,
    principal: Operator,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyHeader = None,
) -> OrderChanged | JSONResponse:
    """A ``dispute.resolved`` record signed by an operator: ``{"order_id", "outcome":
    "refund" | "release", "note"}``. ``refund`` returns the escrow to the buyer
    (state refunded); ``release`` settles it as an acceptance does (state settled,
    with the exchange's ``settlement.paid`` record)."""
    del idempotency_key  # read by Idempotent from the request (documented here)

    def effect(idempotent: Idempotent) -> OrderChanged:
        action = _action(body, principal, authenticator, "dispute.resolved")
        _check_target(action, order_id)
        return lifecycle.resolve(session, action, log_key, settings, idempotent)

    return run_keyed(session, request, principal.key_id, body, lifecycle.rebuild_changed, effect)


@router.post(
    "/{order_id}/revoke",
    response_model=OrderChanged,
    summary="Revoke the buyer's access and refund the unused part (the listing's providers)",
    responses={
        **ok(200, "revoke_access"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch, not_provider",
                404: "order_not_found",
                409: "already_revoked, order_closed, insufficient_funds (a payee cannot cover "
                "its clawback), duplicate_record, concurrent_update",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "target_mismatch, invalid_idempotency_key, idempotency_key_reused",
            }
        ),
    },
    openapi_extra=json_body("revoke_access"),
)
def revoke_access(
    order_id: OrderIdPath,
    body: ActionRequest,
    principal: Provider,
    session: SessionDep,
    request: Request,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    idempotency_key: IdempotencyHeader = None,
) -> OrderChanged | JSONResponse:
    """An ``access.revoked`` record signed by a provider of the order's listing:
    ``{"order_id", "reason"}`` (1 to 500 characters). Downloads are refused from
    then on. Refund (docs/money.md): a subscription's unused part, pro rata; a
    one-off order's whole escrow if not settled yet, nothing once settled. Money
    already paid out is clawed back from the payees in proportion to their parts;
    if one of them cannot cover it, nothing happens (409 ``insufficient_funds``)."""
    del idempotency_key  # read by Idempotent from the request (documented here)

    def effect(idempotent: Idempotent) -> OrderChanged:
        action = _action(body, principal, authenticator, "access.revoked")
        _check_target(action, order_id)
        return lifecycle.revoke(session, action, log_key, idempotent)

    return run_keyed(session, request, principal.key_id, body, lifecycle.rebuild_changed, effect)


def _check_target(action: SignedAction, order_id: str) -> None:
    named = action.payload.get("order_id")
    if isinstance(named, str) and named != order_id:  # a malformed one: invalid_payload
        raise TargetMismatchError(f"the record names order {named}, the request {order_id}")
