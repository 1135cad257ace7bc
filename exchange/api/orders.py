"""Orders over REST: place (``order.placed``, buyer-signed, escrow), read, list."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from exchange.api.responses import signed_errors
from exchange.auth.deps import CurrentParticipant, SessionDep, require_role
from exchange.auth.verifier import Authenticator
from exchange.idempotency import Idempotent, run
from exchange.orders import service
from exchange.orders.schemas import OrderPage, OrderPlaced, OrderPublic
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest, check_action
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/orders", tags=["orders"])

Buyer = Annotated[Principal, Depends(require_role(Role.BUYER))]


@router.post(
    "",
    status_code=201,
    response_model=OrderPlaced,
    summary="Place an order from a quote; the price moves into escrow (buyers)",
    responses=signed_errors(
        {
            400: "invalid_record, invalid_signature",
            402: "insufficient_funds",
            403: "actor_mismatch",
            404: "listing_not_found",
            409: "quote_used, sold_out, quote_expired, listing_not_published, order_exists, "
            "duplicate_record, concurrent_update",
            422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
            "invalid_quote, invalid_quote_signature, quote_mismatch, invalid_terms, "
            "invalid_idempotency_key, idempotency_key_reused",
        }
    ),
)
def place_order(
    body: ActionRequest,
    principal: Buyer,
    session: SessionDep,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> OrderPlaced | JSONResponse:
    """An ``order.placed`` record signed by the buyer: ``{"order_id": <new UUID>,
    "quote": <the quote as issued>}``. The quote must be this exchange's, for you,
    unexpired, unused, and still match the listing's version, digest and price."""
    del idempotency_key  # read by Idempotent from the request (documented here)
    authenticator: Authenticator = request.app.state.authenticator
    idempotent = Idempotent(request, principal.key_id, body)

    def effect() -> OrderPlaced:
        action = check_action(
            body,
            record_type="order.placed",
            public_key=SM2PublicKey.from_pem(principal.public_key_pem),
            principal=principal,
            skew_s=authenticator.skew_s,
        )
        return service.place(session, action, request.app.state.log_key, idempotent)

    result = run(session, idempotent, lambda row: service.rebuild_placed(session, row), effect)
    assert isinstance(result, OrderPlaced | JSONResponse)
    return result


@router.get(
    "/{order_id}",
    response_model=OrderPublic,
    summary="An order (its buyer, the listing's providers, operators)",
    responses=signed_errors({404: "order_not_found (also for an order you may not see)"}),
)
def get_order(
    order_id: Annotated[str, Path(max_length=36)],
    principal: CurrentParticipant,
    session: SessionDep,
) -> OrderPublic:
    return service.get_order(session, principal, order_id)


@router.get(
    "",
    response_model=OrderPage,
    summary="Your orders: as buyer, or on your listings as provider",
    responses=signed_errors({422: "invalid_request"}),
)
def list_orders(
    principal: CurrentParticipant,
    session: SessionDep,
    role: Literal["buyer", "provider"] = "buyer",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> OrderPage:
    return service.list_orders(session, principal, role=role, limit=limit, offset=offset)
