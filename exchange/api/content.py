"""Content upload over REST: a provider streams a listing version's dataset.

``PUT /listings/{listing_id}/versions/{version}/content`` takes the raw bytes
(``application/octet-stream``), never whole in memory: the body-size
middleware is switched off for it (``body_limit(None)``; its own limit is
``settings.content_max_bytes``), the signature is checked over the headers
before the body is read (``StreamingParticipant``), and the body streams in a
worker thread through the Content-Digest check into the encrypted store
(see :mod:`exchange.delivery.upload`).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from exchange.api.deps import (
    ContentStoreDep,
    EngineDep,
    SettingsDep,
    StreamingParticipant,
    UploadLimiterDep,
)
from exchange.api.examples import ok, request_example, response_example
from exchange.api.params import ListingIdPath
from exchange.api.responses import signed_errors
from exchange.auth.authorisation import check_role
from exchange.content import ContentTooLargeError
from exchange.content.store import blocking_chunks
from exchange.delivery.errors import UploadIncompleteError
from exchange.delivery.schemas import ContentUploaded
from exchange.delivery.upload import store_upload, upload_target
from exchange.limits import body_limit
from exchange.participants.models import Principal, Role

__all__ = ["router"]

router = APIRouter(prefix="/listings", tags=["content"])

_MAX_VERSION = 2**31 - 1

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The dataset's exact bytes (their SM3 must be the version's "
        "content_digest). Sign the request with a Content-Digest computed beforehand "
        "(clients.signing.content_digest_of_file): it is checked as the body streams.",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "examples": {
                    "csv": {
                        "summary": "A CSV dataset (its first lines: the body is the whole file)",
                        "value": request_example("upload_content"),
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
            "description": "RFC 9530 digest of the whole body, `sm3=:<base64 SM3>:` (or "
            "sha-256), covered by the request signature and checked as the body streams "
            "(401 digest_mismatch). The example is the digest of the example body.",
            "example": request_example("upload_content_digest"),
        }
    ],
}


def _target(engine: Engine, principal: Principal, listing_id: str, version: int) -> str:
    with Session(engine) as session:
        return upload_target(session, principal, listing_id, version)


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


@router.put(
    "/{listing_id}/versions/{version}/content",
    status_code=201,
    response_model=ContentUploaded,
    summary="Upload a listing version's dataset, streamed (the listing's providers)",
    openapi_extra=_BODY,
    responses={
        **ok(201, "upload_content"),
        200: {
            "model": ContentUploaded,
            "description": "The same content was already stored.",
            "content": {"application/json": {"example": response_example("upload_content")}},
        },
        **signed_errors(
            {
                400: "upload_incomplete (the client went away)",
                403: "not_a_provider",
                404: "listing_not_found, version_not_found",
                409: "provider_custody (the data stays with its provider), listing_delisted, "
                "content_exists",
                413: "content_too_large (settings.content_max_bytes)",
                422: "invalid_request, content_digest_mismatch (the bytes are not those "
                "the listing version commits to)",
            }
        ),
    },
)
@body_limit(None)
async def upload_content(
    listing_id: ListingIdPath,
    version: Annotated[int, Path(ge=1, le=_MAX_VERSION)],
    request: Request,
    signed: StreamingParticipant,
    store: ContentStoreDep,
    engine: EngineDep,
    settings: SettingsDep,
    limiter: UploadLimiterDep,
) -> ContentUploaded | JSONResponse:
    """The body is the dataset. Its SM3 must equal the listing version's committed
    ``content_digest`` (422 ``content_digest_mismatch`` otherwise) and it must match
    the request's signed ``Content-Digest`` (401 ``digest_mismatch``): both are
    checked as it streams and nothing is kept unless both hold. Stored SM4-GCM
    encrypted (docs/custody.md). 201 when stored; 200 when the same content was
    already there (an idempotent retry). Any listing state but delisted."""
    principal = check_role(signed.principal, Role.PROVIDER)
    expected = await run_in_threadpool(_target, engine, principal, listing_id, version)
    max_bytes = settings.content_max_bytes
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        raise ContentTooLargeError(max_bytes)
    ingest = functools.partial(
        store_upload,
        store,
        listing_id,
        version,
        blocking_chunks(request.stream()),
        signed.body,
        expected,
        max_bytes,
    )
    try:
        content, created = await anyio.to_thread.run_sync(ingest, limiter=limiter)
    except ClientDisconnect:
        raise UploadIncompleteError("the client disconnected before the end of the body") from None
    uploaded = ContentUploaded(
        listing_id=content.listing_id,
        version=content.version,
        sm3=content.sm3_hex,
        size=content.plaintext_size,
    )
    if created:
        return uploaded
    return JSONResponse(uploaded.model_dump(), status_code=200)
