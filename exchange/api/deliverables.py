"""Provider-custody delivery over REST (exchange.delivery.provider).

``PUT /orders/{id}/deliverable``: a provider of the order's listing streams the
ciphertext its agent made for the buyer (stored byte for byte, no record);
``POST /orders/{id}/deliverable``: the provider-signed ``delivery.issued`` that
describes it (the order becomes delivered); ``GET /orders/{id}/delivery``: the
buyer reads the latest ``delivery.issued`` of its order, in either custody.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from exchange.accounts.service import now_ms
from exchange.api.deps import (
    AuthenticatorDep,
    DeliverableStoreDep,
    EngineDep,
    LogKeyDep,
    SessionDep,
    SettingsDep,
    StreamingParticipant,
    UploadLimiterDep,
    require_role,
)
from exchange.api.examples import json_body, ok, request_example
from exchange.api.params import OrderIdPath
from exchange.api.responses import signed_errors
from exchange.auth.authorisation import check_role
from exchange.content import ContentTooLargeError
from exchange.content.deliverables import DeliverableStore, StoredDeliverable
from exchange.content.store import blocking_chunks
from exchange.delivery import provider
from exchange.delivery.errors import UploadIncompleteError
from exchange.delivery.schemas import DeliverableUploaded, DeliveryRecord
from exchange.delivery.service import download_path
from exchange.delivery.upload import checked_chunks
from exchange.limits import body_limit
from exchange.orders.schemas import OrderChanged
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest, check_action
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/orders", tags=["delivery"])

Provider = Annotated[Principal, Depends(require_role(Role.PROVIDER))]
Buyer = Annotated[Principal, Depends(require_role(Role.BUYER, Role.ASSESSOR))]
"""Buyers, and assessors on their assessment orders (exchange.orders.assessment)."""

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The order's deliverable as the provider's agent encrypted it "
        "(ledger.sm4.encrypt_stream, associated data "
        "ledger.protocol.delivery.deliverable_aad): stored byte for byte; the exchange "
        "cannot decrypt it. Sign the request with a Content-Digest computed beforehand.",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "examples": {
                    "ciphertext": {
                        "summary": "Ciphertext (base64 here; the body is raw bytes)",
                        "value": request_example("upload_deliverable"),
                    }
                },
            }
        },
    },
    "parameters": [
        {
            "name": "Content-Digest",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "RFC 9530 digest of the whole body, `sm3=:<base64 SM3>:`, covered "
            "by the request signature and checked as the body streams (401 digest_mismatch).",
            "example": request_example("upload_deliverable_digest"),
        }
    ],
}


def _target(engine: Engine, principal: Principal, order_id: str) -> None:
    with Session(engine) as session:
        provider.upload_target(session, principal, order_id)


@router.put(
    "/{order_id}/deliverable",
    response_model=DeliverableUploaded,
    summary="Upload an order's encrypted deliverable, streamed (the listing's providers)",
    openapi_extra=_BODY,
    responses={
        **ok(200, "upload_deliverable"),
        **signed_errors(
            {
                400: "upload_incomplete (the client went away)",
                404: "order_not_found (also for an order of a listing you do not provide)",
                409: "exchange_custody, order_closed, already_delivered",
                413: "content_too_large (settings.content_max_bytes)",
                422: "invalid_request",
            }
        ),
    },
)
@body_limit(None)
async def upload_deliverable(
    order_id: OrderIdPath,
    request: Request,
    signed: StreamingParticipant,
    deliverables: DeliverableStoreDep,
    engine: EngineDep,
    settings: SettingsDep,
    limiter: UploadLimiterDep,
) -> DeliverableUploaded:
    """The body is the ciphertext the provider's agent made for this order's buyer.
    It must match the request's signed ``Content-Digest`` (401 ``digest_mismatch``,
    checked as it streams; nothing is kept otherwise). Stored atomically; uploading
    again replaces it until the order is delivered. No log record: the provider's
    ``delivery.issued`` (POST) names the ciphertext's SM3 and size."""
    principal = check_role(signed.principal, Role.PROVIDER)
    await run_in_threadpool(_target, engine, principal, order_id)
    max_bytes = settings.content_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ContentTooLargeError(max_bytes)
    write = functools.partial(
        _write,
        deliverables,
        order_id,
        checked_chunks(blocking_chunks(request.stream()), signed.body),
        max_bytes,
    )
    try:
        stored = await anyio.to_thread.run_sync(write, limiter=limiter)
    except ClientDisconnect:
        raise UploadIncompleteError("the client disconnected before the end of the body") from None
    return DeliverableUploaded(
        order_id=order_id, ciphertext_sm3=stored.sm3_hex, ciphertext_size=stored.size
    )


def _write(
    store: DeliverableStore, order_id: str, chunks: Any, max_bytes: int
) -> StoredDeliverable:
    return store.write(order_id, chunks, max_bytes)


@router.post(
    "/{order_id}/deliverable",
    status_code=201,
    response_model=OrderChanged,
    summary="Deliver an order: the provider-signed delivery.issued (the listing's providers)",
    responses={
        **ok(201, "confirm_deliverable"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch, not_a_provider",
                404: "order_not_found",
                409: "exchange_custody, order_closed, already_delivered, deliverable_missing, "
                "duplicate_record, concurrent_update",
                422: "invalid_request, wrong_record_type, stale_record, invalid_payload, "
                "delivery_mismatch",
            }
        ),
    },
    openapi_extra=json_body("confirm_deliverable"),
)
def confirm_deliverable(
    order_id: OrderIdPath,
    body: ActionRequest,
    principal: Provider,
    session: SessionDep,
    deliverables: DeliverableStoreDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
) -> OrderChanged:
    """A ``delivery.issued`` record signed by a provider of the order's listing, its
    payload ``ledger.protocol.delivery.ProviderDelivery``: the order, listing,
    version and buyer; the rows and their range proof (a quantity order: exactly
    the rows bought, against the version's row_root and row_count) or none (the
    whole dataset: plaintext_sm3 = the version's content_digest); the uploaded
    ciphertext's SM3 and size; the content key wrapped to the buyer. The order
    becomes delivered and its acceptance window opens."""
    action = check_action(
        body,
        record_type="delivery.issued",
        public_key=SM2PublicKey.from_pem(principal.public_key_pem),
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    return provider.confirm(
        session,
        deliverables,
        log_key,
        action,
        order_id,
        acceptance_window_s=settings.acceptance_window_s,
        now_ms=now_ms(),
    )


@router.get(
    "/{order_id}/delivery",
    response_model=DeliveryRecord,
    summary="The order's latest delivery.issued record (its buyer)",
    responses={
        **ok(200, "get_delivery"),
        **signed_errors(
            {
                404: "order_not_found (also for an order that is not yours)",
                409: "not_delivered",
                422: "invalid_request",
            }
        ),
    },
)
def get_delivery(order_id: OrderIdPath, principal: Buyer, session: SessionDep) -> DeliveryRecord:
    """The latest ``delivery.issued`` of your order as logged, with its log index and
    where to download the ciphertext. In provider custody check the record's
    signature against the listing's providers and the payload against what you
    bought (the SDK's ``receive`` does it all)."""
    return provider.latest(session, principal, order_id, download_path(order_id))
