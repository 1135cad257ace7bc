"""Quotes over REST: ``POST /listings/{id}/quotes`` (buyers).

A quote is the exchange's own statement (signed with its log key, see
``exchange.quotes``), not a participant's record: nothing is logged.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from exchange.api.examples import json_body, ok
from exchange.api.params import ListingIdPath
from exchange.api.responses import signed_errors
from exchange.auth.deps import SessionDep, require_role
from exchange.orders import service
from exchange.orders.schemas import QuoteIssued, QuoteRequest
from exchange.participants.models import Principal, Role

__all__ = ["router"]

router = APIRouter(tags=["orders"])

Buyer = Annotated[Principal, Depends(require_role(Role.BUYER))]


@router.post(
    "/listings/{listing_id}/quotes",
    status_code=201,
    response_model=QuoteIssued,
    summary="Quote a published listing's current version for you (buyers)",
    responses={
        **ok(201, "quote_listing"),
        **signed_errors(
            {
                404: "listing_not_found",
                409: "listing_not_published, provider_suspended, sold_out",
                422: "invalid_request, invalid_terms",
            }
        ),
    },
    openapi_extra=json_body("quote_listing"),
)
def quote_listing(
    listing_id: ListingIdPath,
    body: QuoteRequest,
    principal: Buyer,
    session: SessionDep,
    request: Request,
) -> QuoteIssued:
    """Body ``{"terms": {"rows"?, "periods"?, "licence"?}}``: ``rows`` for tiered,
    ``periods`` for subscription pricing. The quote binds the listing, its current
    version and content digest, you, the terms and the amount (fen) until
    ``expires_at`` (``quote_ttl_s``)."""
    quote = service.issue(
        session,
        principal,
        listing_id,
        body.terms,
        request.app.state.log_key,
        request.app.state.settings.quote_ttl_s,
    )
    return QuoteIssued(quote=quote.to_dict())
