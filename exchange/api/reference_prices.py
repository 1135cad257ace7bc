"""A listing's reference price over REST: ``GET /listings/{id}/reference-price``.

Public for a published (or delisted) listing, like the listing itself; the answer
is ``ledger.pricing_reference.reference_price`` as of the log's current size,
which anyone can recompute from the public log (``shancheng audit
reference-price``; docs/pricing.md). It names orders and listings, never buyers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from exchange.api.deps import OptionalParticipant, SessionDep
from exchange.api.params import ListingIdPath
from exchange.api.responses import error_responses
from exchange.refprice.schemas import ReferencePricePublic
from exchange.refprice.service import listing_reference_price

__all__ = ["router"]

router = APIRouter(prefix="/listings", tags=["listings"])

_ORDER = "0b4e4f8e-6f3c-4d7e-9a55-1c2d3e4f5a6b"
_LISTING = "5f0c2a1e-8b7d-4c3a-9e1f-2a3b4c5d6e7f"
_EXAMPLE: dict[str, Any] = {
    "listing_id": "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "version": 1,
    "category": "transport",
    "unit": "order",
    "as_of": {"log_size": 412, "timestamp": 1_765_000_000_000},
    "cost": {
        "acquisition_fen": 3_000_000,
        "processing_fen": 1_200_000,
        "storage_fen": 300_000,
        "compliance_fen": 500_000,
        "other_fen": 0,
        "expected_units": 400,
        "margin_bp": 2_000,
        "total_fen": 5_000_000,
        "low": 12_500,
        "high": 15_000,
    },
    "market": {
        "status": "insufficient_comparables",
        "low": None,
        "median": None,
        "high": None,
        "comparables": [
            {
                "order_id": _ORDER,
                "listing_id": _LISTING,
                "unit_price_fen": 14_000,
                "settled_at": 1_764_000_000_000,
                "grade": None,
                "adjustments": {"quality_bp": 10_000, "freshness_bp": 10_000},
                "adjusted_unit_price_fen": 14_000,
            }
        ],
        "method": {
            "window_ms": 15_552_000_000,
            "since": 1_749_448_000_000,
            "max_comparables": 50,
            "min_comparables": 5,
            "quantiles": [25, 50, 75],
            "quantile_method": "linear interpolation between closest ranks (type 7), half up",
            "subject_grade": None,
        },
    },
    "asking": {"unit_price_fen": 13_900, "position": {"market": None, "cost": "within"}},
}


@router.get(
    "/{listing_id}/reference-price",
    response_model=ReferencePricePublic,
    summary="A listing's reference price: cost and market methods, asking price's position",
    responses={
        200: {"content": {"application/json": {"example": _EXAMPLE}}},
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
def get_reference_price(
    listing_id: ListingIdPath, principal: OptionalParticipant, session: SessionDep
) -> dict[str, Any]:
    """The cost method (from the current version's declared ``cost_basis``), the
    market method (comparable settled deals of other listings: same category and
    pricing unit, adjusted for quality and freshness; order ids only), and where the
    asking unit price falls. ``as_of`` names the log size it was computed at: the
    same answer comes from replaying the log's first ``as_of.log_size`` entries."""
    return listing_reference_price(session, listing_id, principal)
