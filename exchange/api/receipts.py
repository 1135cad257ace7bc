"""``GET /receipts/{index}``: the receipt bundle (v1) proving one entry against the chain."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from exchange.anchoring.coverage import receipt_retry_after
from exchange.anchoring.receipts import build_receipt
from exchange.api.deps import LogKeyDep, SessionDep, SettingsDep
from exchange.api.examples import ok
from exchange.api.responses import error_responses
from exchange.errors import error_body
from exchange.log.errors import ReceiptPendingError
from exchange.log.schemas import BundleBody
from ledger.records import now_ms

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
                409: "receipt_pending: no anchored checkpoint covers the entry yet; the body's "
                "retry_after (and the Retry-After header) says in how many seconds to ask again",
                422: "invalid_request",
            }
        ),
    },
)
def get_receipt(
    index: int, session: SessionDep, log_key: LogKeyDep, settings: SettingsDep
) -> JSONResponse:
    """Everything an auditor needs, offline from the exchange: the signed record, the
    actor's key, the promise, the inclusion proof at the earliest anchored checkpoint
    covering the entry, that checkpoint, the log key and the anchor transaction.
    The format and how to verify it: docs/bundle-v1.md (``shancheng audit verify``, or
    the explorer's /verify page). Before an anchor covers the entry: 409
    ``receipt_pending`` with ``retry_after`` (whole seconds, an estimate from the
    anchoring interval) in the body and as ``Retry-After``."""
    try:
        bundle = build_receipt(session, index, log_key.public_key())
    except ReceiptPendingError as exc:
        seconds = receipt_retry_after(session, index, settings.anchor_interval_s, now_ms())
        return JSONResponse(
            {
                **error_body(
                    exc.code,
                    f"{exc.message.removesuffix('; retry later')}; retry in about {seconds} s",
                ),
                "retry_after": seconds,
            },
            status_code=exc.status,
            headers={"Retry-After": str(seconds)},
        )
    # Returned as built (not re-serialised through the response model).
    return JSONResponse(bundle.to_dict())
