"""Quotes over REST: ``POST /listings/{id}/quotes`` (buyers).

A quote is the exchange's own statement (signed with its log key, see
``exchange.quotes``), not a participant's record: nothing is logged. Each costs an
SM2 signature, so a key may ask for ``quote_burst`` at once, then
``quote_rate_per_s`` a second (per worker process, :mod:`exchange.ratelimit`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from exchange.api.deps import (
    LogKeyDep,
    QuoteBucketsDep,
    SessionDep,
    SettingsDep,
    require_role,
)
from exchange.api.examples import json_body, ok
from exchange.api.params import ListingIdPath
from exchange.api.responses import signed_errors
from exchange.orders import service
from exchange.orders.schemas import QuoteIssued, QuoteRequest
from exchange.participants.models import Principal, Role
from exchange.ratelimit import RateLimitedError, admit, rate_limited_response

__all__ = ["router"]

router = APIRouter(tags=["orders"])

Buyer = Annotated[Principal, Depends(require_role(Role.BUYER, Role.ASSESSOR))]
"""Buyers, and assessors on their assessment orders (exchange.orders.assessment)."""


@router.post(
    "/listings/{listing_id}/quotes",
    status_code=201,
    response_model=QuoteIssued,
    summary="Quote a published listing's current version for you (buyers; assessors: "
    "an assessment at 0 fen)",
    responses={
        **ok(201, "quote_listing"),
        **signed_errors(
            {
                403: "assessment_forbidden (a zero-price assessment is an approved "
                "assessor's only order)",
                404: "listing_not_found",
                409: "listing_not_published, provider_suspended, sold_out, certificate_cancelled, "
                "certificate_expired",
                422: "invalid_request, invalid_terms",
                429: "rate_limited: more than quote_rate_per_s quotes a second from this key "
                "(after quote_burst at once); retry after Retry-After seconds",
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
    buckets: QuoteBucketsDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
) -> QuoteIssued | JSONResponse:
    """Body ``{"terms": {"rows"?, "periods"?, "licence"?}}``: ``rows`` for tiered,
    ``periods`` for subscription pricing. The quote binds the listing, its current
    version and content digest, you, the terms and the amount (fen) until
    ``expires_at`` (``quote_ttl_s``)."""
    try:
        admit(buckets, principal.key_id, "asks for quotes faster than quote_rate_per_s allows")
    except RateLimitedError as exc:
        return rate_limited_response(exc)
    quote = service.issue(
        session,
        principal,
        listing_id,
        body.terms,
        log_key,
        settings.quote_ttl_s,
    )
    return QuoteIssued(quote=quote.to_dict())
