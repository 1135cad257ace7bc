"""Delivery over REST: the buyer's envelope and the ciphertext download.

``POST /orders/{id}/delivery`` issues the content key SM2-encrypted to the
buyer (``delivery.issued``, logged by the exchange); ``GET
/orders/{id}/content`` streams the stored SM4-GCM ciphertext, with single
byte ranges (RFC 9110 §14) so a download resumes where it stopped. The buyer
decrypts with ``ledger.delivery.decrypt_file`` (see docs/custody.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from exchange.accounts.service import now_ms
from exchange.api.deps import (
    ContentStoreDep,
    DeliverableStoreDep,
    LogKeyDep,
    SessionDep,
    SettingsDep,
    require_role,
)
from exchange.api.examples import json_body, ok, response_example
from exchange.api.params import OrderIdPath
from exchange.api.responses import signed_errors
from exchange.content import RangeNotSatisfiableError, content_range, parse_range
from exchange.content.deliverables import StoredDeliverable
from exchange.content.store import Delivery
from exchange.delivery import service
from exchange.delivery.schemas import DeliveryIssued, DeliveryRequest
from exchange.errors import error_body
from exchange.participants.models import Principal, Role

__all__ = ["router"]

router = APIRouter(prefix="/orders", tags=["delivery"])

Buyer = Annotated[Principal, Depends(require_role(Role.BUYER, Role.ASSESSOR))]
"""Buyers, and assessors on their assessment orders (exchange.orders.assessment)."""

_ACCESS_ERRORS = {
    403: "access_revoked, access_expired",
    404: "order_not_found (also for an order that is not yours)",
}

_CIPHERTEXT = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_DOWNLOAD = response_example("download_content")  # {"etag", "size"} of the example's ciphertext


def _download_headers(length: int) -> dict[str, Any]:
    return {
        "Accept-Ranges": {"schema": {"type": "string"}, "description": "bytes", "example": "bytes"},
        "ETag": {
            "schema": {"type": "string"},
            "description": "Names this stored ciphertext.",
            "example": _DOWNLOAD["etag"],
        },
        "Content-Length": {"schema": {"type": "integer"}, "example": length},
    }


@router.post(
    "/{order_id}/delivery",
    response_model=DeliveryIssued,
    summary="Receive the content key in an SM2 envelope (the order's buyer)",
    responses={
        **ok(200, "request_delivery"),
        **signed_errors(
            {
                **_ACCESS_ERRORS,
                409: "provider_custody (the provider's agent delivers: GET .../delivery), "
                "order_closed (refunded), content_not_available (not uploaded yet), "
                "concurrent_update",
                422: "invalid_request",
            }
        ),
    },
    openapi_extra=json_body("request_delivery"),
)
def request_delivery(
    order_id: OrderIdPath,
    principal: Buyer,
    session: SessionDep,
    store: ContentStoreDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
    body: Annotated[DeliveryRequest | None, Body()] = None,
) -> DeliveryIssued:
    """Sign the request; the body is `{}` or empty, you sign no record. The exchange
    logs a `delivery.issued` record signed by its log key (`{order_id, buyer,
    listing_id, version, content_digest, envelope_sm3}`) and answers with the
    envelope: the content key SM2-encrypted to your registered public key. The
    first delivery moves the order from placed to delivered and opens the
    acceptance window (`acceptance_deadline`); later calls issue a fresh
    envelope and change nothing else."""
    del body  # nothing in it; declared so that a body other than {} is refused
    return service.issue(
        session,
        store,
        log_key,
        principal,
        order_id,
        acceptance_window_s=settings.acceptance_window_s,
        now_ms=now_ms(),
    )


def _download(
    method: str,
    delivery: Delivery | StoredDeliverable,
    range_header: str | None,
    if_range: str | None,
) -> Response:
    size = delivery.size
    etag = delivery.etag
    headers = {"Accept-Ranges": "bytes", "ETag": etag}
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's part is of another ciphertext: send it whole
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiableError as exc:
        return JSONResponse(
            error_body(exc.code, exc.message),
            status_code=416,
            headers={**headers, "Content-Range": f"bytes */{size}"},
        )
    status = 200 if span is None else 206
    start, end = span or (0, size)
    if span is not None:
        headers["Content-Range"] = content_range(start, end, size)
    headers["Content-Length"] = str(end - start)
    if method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        delivery.read_range(start, end),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


def _serve(
    order_id: str,
    principal: Principal,
    session: SessionDep,
    store: ContentStoreDep,
    deliverables: DeliverableStoreDep,
    request: Request,
    range_header: str | None,
    if_range: str | None,
) -> Response:
    delivery = service.open_download(
        session, store, deliverables, principal, order_id, now_ms=now_ms()
    )
    session.close()  # the stream may take long: hold no connection meanwhile
    return _download(request.method, delivery, range_header, if_range)


_GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The whole ciphertext.",
        "content": _CIPHERTEXT,
        "headers": _download_headers(_DOWNLOAD["size"]),
    },
    206: {
        "description": "The requested byte range (Content-Range: bytes a-b/size).",
        "content": _CIPHERTEXT,
        "headers": {
            **_download_headers(_DOWNLOAD["size"] - 65_536),
            "Content-Range": {
                "schema": {"type": "string"},
                "example": f"bytes 65536-{_DOWNLOAD['size'] - 1}/{_DOWNLOAD['size']}",
            },
        },
    },
    **signed_errors(
        {
            **_ACCESS_ERRORS,
            409: "order_closed, not_delivered (request the envelope first), content_not_available",
            416: "range_not_satisfiable (Content-Range: bytes */size)",
            422: "invalid_request",
        }
    ),
}


@router.get(
    "/{order_id}/content",
    response_class=StreamingResponse,
    summary="Download the order's ciphertext, HTTP Range supported (the order's buyer)",
    responses=_GET_RESPONSES,
)
def download_content(
    order_id: OrderIdPath,
    principal: Buyer,
    session: SessionDep,
    store: ContentStoreDep,
    deliverables: DeliverableStoreDep,
    request: Request,
    range_header: Annotated[
        str | None,
        Header(
            alias="Range",
            description="One range: bytes=a-b, bytes=a- or bytes=-n (others are ignored).",
        ),
    ] = None,
    if_range: Annotated[
        str | None,
        Header(alias="If-Range", description="An ETag: the range applies only if it matches."),
    ] = None,
) -> Response:
    """The stored SM4-GCM ciphertext (the chunked format of ledger.sm4.encrypt_stream),
    exactly as stored: decrypt it with the key from your envelope
    (ledger.delivery.decrypt_file, then check the SM3 against the order's
    content_digest). Needs an envelope issued before (POST .../delivery). In
    provider custody: the ciphertext the provider's agent uploaded for this
    order, byte for byte, once its delivery.issued is logged (ETag: its SM3);
    decrypt it with the key wrapped in that record (GET .../delivery). A
    download resumes with `Range: bytes=<bytes you have>-` (and `If-Range: <ETag>`)."""
    return _serve(
        order_id, principal, session, store, deliverables, request, range_header, if_range
    )


@router.head("/{order_id}/content", include_in_schema=False)
def download_content_head(
    order_id: OrderIdPath,
    principal: Buyer,
    session: SessionDep,
    store: ContentStoreDep,
    deliverables: DeliverableStoreDep,
    request: Request,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """The headers of the download (size, ETag, range) without its body."""
    return _serve(
        order_id, principal, session, store, deliverables, request, range_header, if_range
    )
