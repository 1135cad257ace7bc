"""``GET /receipts/{index}``: the receipt bundle (v1) proving one entry against the chain."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from exchange.anchoring.receipts import build_receipt
from exchange.api.deps import LogKeyDep, SessionDep
from exchange.api.examples import ok
from exchange.api.responses import error_responses
from exchange.log.schemas import BundleBody

__all__ = ["router"]

router = APIRouter(tags=["receipts"])


@router.get(
    "/receipts/{index}",
    response_model=BundleBody,
    summary="Receipt bundle of an entry",
    responses={
        **ok(200, "get_receipt"),
        **error_responses(
            {
                404: "entry_not_found",
                409: "receipt_pending: no anchored checkpoint covers the entry yet",
                422: "invalid_request",
            }
        ),
    },
)
def get_receipt(index: int, session: SessionDep, log_key: LogKeyDep) -> JSONResponse:
    """Everything an auditor needs, offline from the exchange: the signed record, the
    actor's key, the promise, the inclusion proof at the earliest anchored checkpoint
    covering the entry, that checkpoint, the log key and the anchor transaction.
    The format and how to verify it: docs/bundle-v1.md (``shancheng audit verify``, or
    the explorer's /verify page)."""
    bundle = build_receipt(session, index, log_key.public_key())
    # Returned as built (not re-serialised through the response model).
    return JSONResponse(bundle.to_dict())
