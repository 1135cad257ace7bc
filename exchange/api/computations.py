"""Computations over REST (docs/computations.md): a buyer's query on a computation
order (``computation.requested``), the provider's encrypted result and signed
answer (``computation.completed`` / ``computation.refused``), and reading them."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from exchange.api.deps import (
    AuthenticatorDep,
    CurrentParticipant,
    EngineDep,
    LogKeyDep,
    SessionDep,
    SettingsDep,
    StreamingParticipant,
    UploadLimiterDep,
    require_role,
)
from exchange.api.examples import json_body, ok, request_example, response_example
from exchange.api.params import UUID_PATTERN
from exchange.api.responses import signed_errors
from exchange.auth.authorisation import check_role
from exchange.auth.verifier import StreamedBody
from exchange.computations import service
from exchange.computations.errors import ResultTooLargeError
from exchange.computations.results import (
    MAX_RESULT_BYTES,
    ResultStore,
    StoredResult,
    result_store_from_settings,
)
from exchange.computations.schemas import (
    ComputationAnswered,
    ComputationPage,
    ComputationPublic,
    ComputationRequested,
    ResultUploaded,
)
from exchange.content.store import blocking_chunks
from exchange.delivery.errors import UploadIncompleteError
from exchange.delivery.upload import checked_chunks
from exchange.limits import body_limit
from exchange.participants.models import Principal, Role
from exchange.records import ActionRequest, check_action
from ledger.protocol.computation import (
    COMPUTATION_COMPLETED,
    COMPUTATION_REFUSED,
    COMPUTATION_REQUESTED,
)
from ledger.sm2 import SM2PublicKey

__all__ = ["router"]

router = APIRouter(prefix="/computations", tags=["computations"])

Buyer = Annotated[Principal, Depends(require_role(Role.BUYER))]
Provider = Annotated[Principal, Depends(require_role(Role.PROVIDER))]
ComputationIdPath = Annotated[
    str, Path(pattern=UUID_PATTERN, description="The computation's UUID.")
]


def _results(settings: SettingsDep) -> ResultStore:
    return result_store_from_settings(settings)


ResultStoreDep = Annotated[ResultStore, Depends(_results)]

_SIGNED_RECORD_422 = "invalid_request, wrong_record_type, stale_record, invalid_payload"


@router.post(
    "",
    status_code=201,
    response_model=ComputationRequested,
    summary="Ask a query on a computation order; one query of it is reserved (its buyer)",
    responses={
        **ok(201, "request_computation"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch, access_expired (the usage policy's days of use are over)",
                404: "order_not_found (also for an order that is not yours)",
                409: "order_closed, not_a_computation_order, budget_exhausted, "
                "computation_exists, duplicate_record",
                422: f"{_SIGNED_RECORD_422}, query_refused (the body's reason field says "
                "why, e.g. returns_rows)",
            }
        ),
    },
    openapi_extra=json_body("request_computation"),
)
def request_computation(
    body: ActionRequest,
    principal: Buyer,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
) -> ComputationRequested:
    """A `computation.requested` record signed by the order's buyer:
    `{"computation_id": <new UUID>, "order_id", "sql"}`. The order must be a paid,
    open computation order (placed or delivered); the SQL must pass the validator
    against the offer of the version bought (422 `query_refused` with its `reason`
    otherwise); one query, and its ε, is taken from the order's allowance (409
    `budget_exhausted` when none is left). The provider's agent answers it."""
    action = check_action(
        body,
        record_type=COMPUTATION_REQUESTED,
        public_key=SM2PublicKey.from_pem(principal.public_key_pem),
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    return service.request(session, action, log_key)


@router.get(
    "",
    response_model=ComputationPage,
    summary="An order's computations, newest first",
    responses={
        **ok(200, "list_computations"),
        **signed_errors({404: "order_not_found", 422: "invalid_request"}),
    },
)
def list_computations(
    order_id: Annotated[str, Query(pattern=UUID_PATTERN, description="The order's UUID.")],
    principal: CurrentParticipant,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ComputationPage:
    return service.list_computations(session, principal, order_id, limit=limit, offset=offset)


@router.get(
    "/{computation_id}",
    response_model=ComputationPublic,
    summary="A computation, with its signed records (the buyer, the providers, operators)",
    responses={
        **ok(200, "get_computation"),
        **signed_errors(
            {
                404: "computation_not_found (also for one you may not see)",
                422: "invalid_request",
            }
        ),
    },
)
def get_computation(
    computation_id: ComputationIdPath, principal: CurrentParticipant, session: SessionDep
) -> ComputationPublic:
    return service.get_computation(session, principal, computation_id)


_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The result encrypted to the buyer (SM4 chunks, associated data "
        "ledger.protocol.computation.result_aad), at most 16 MiB, stored byte for byte.",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "example": request_example("upload_computation_result"),
            }
        },
    },
    "parameters": [
        {
            "name": "Content-Digest",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "RFC 9530 digest of the whole body, covered by the request "
            "signature and checked as the body streams (401 digest_mismatch).",
            "example": request_example("upload_computation_result_digest"),
        }
    ],
}


def _upload_target(engine: Engine, principal: Principal, computation_id: str) -> None:
    with Session(engine) as session:
        service.upload_target(session, principal, computation_id)


def _store(
    store: ResultStore, computation_id: str, chunks: Any, body: StreamedBody
) -> StoredResult:
    return store.store(computation_id, checked_chunks(chunks, body), MAX_RESULT_BYTES)


@router.put(
    "/{computation_id}/result",
    response_model=ResultUploaded,
    summary="Upload a computation's encrypted result (the listing's providers)",
    openapi_extra=_UPLOAD,
    responses={
        **ok(200, "upload_computation_result"),
        **signed_errors(
            {
                400: "upload_incomplete (the client went away)",
                404: "computation_not_found (also when you are not a provider of its listing)",
                409: "computation_closed, order_closed",
                413: "result_too_large (16 MiB)",
                422: "invalid_request",
            }
        ),
    },
)
@body_limit(None)
async def upload_result(
    computation_id: ComputationIdPath,
    request: Request,
    signed: StreamingParticipant,
    store: ResultStoreDep,
    engine: EngineDep,
    limiter: UploadLimiterDep,
) -> ResultUploaded:
    """The body is the ciphertext; a re-upload replaces the earlier one while the
    computation is pending. No log record: the provider's `computation.completed`
    names the ciphertext's SM3 and size."""
    principal = check_role(signed.principal, Role.PROVIDER)
    await run_in_threadpool(_upload_target, engine, principal, computation_id)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESULT_BYTES:
        raise ResultTooLargeError(f"the result exceeds the limit of {MAX_RESULT_BYTES} bytes")
    ingest = functools.partial(
        _store, store, computation_id, blocking_chunks(request.stream()), signed.body
    )
    try:
        stored = await anyio.to_thread.run_sync(ingest, limiter=limiter)
    except ClientDisconnect:
        raise UploadIncompleteError("the client disconnected before the end of the body") from None
    return ResultUploaded(
        computation_id=computation_id, ciphertext_sm3=stored.sm3_hex, ciphertext_size=stored.size
    )


@router.post(
    "/{computation_id}/outcome",
    status_code=201,
    response_model=ComputationAnswered,
    summary="Answer a computation: completed or refused (the listing's providers)",
    responses={
        **ok(201, "answer_computation"),
        **signed_errors(
            {
                400: "invalid_record, invalid_signature",
                403: "actor_mismatch, not_a_provider",
                404: "computation_not_found",
                409: "computation_closed, order_closed, result_missing, duplicate_record, "
                "concurrent_update",
                422: f"{_SIGNED_RECORD_422}, computation_mismatch (query_sm3, epsilon_spent, "
                "order_id or the uploaded result differ)",
            }
        ),
    },
    openapi_extra=json_body("answer_computation"),
)
def answer_computation(
    computation_id: ComputationIdPath,
    body: ActionRequest,
    principal: Provider,
    session: SessionDep,
    authenticator: AuthenticatorDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
) -> ComputationAnswered:
    """A provider-signed `computation.completed` (`{computation_id, order_id,
    query_sm3, result_sm3, ciphertext_sm3, ciphertext_size, wrapped_key,
    epsilon_spent, rows_scanned}`: the uploaded result must have that SM3 and size,
    `query_sm3` is the SM3 of the requested SQL, `epsilon_spent` the ε reserved; the
    order's first answer delivers it) or `computation.refused` (`{computation_id,
    order_id, reason}`: the reserved query and ε go back to the order)."""
    named = body.record.get("record")
    record_type = named.get("type") if isinstance(named, dict) else None
    action = check_action(
        body,
        record_type=COMPUTATION_REFUSED
        if record_type == COMPUTATION_REFUSED
        else COMPUTATION_COMPLETED,
        public_key=SM2PublicKey.from_pem(principal.public_key_pem),
        signer=principal.key_id,
        skew_s=authenticator.skew_s,
    )
    return service.answer(
        session,
        action,
        computation_id,
        result_store_from_settings(settings),
        log_key,
        settings.acceptance_window_s,
    )


_RESULT = response_example("computation_result")  # {"etag", "size"} of the example's result


@router.get(
    "/{computation_id}/result",
    response_class=Response,
    summary="Download a completed computation's encrypted result (the order's buyer)",
    responses={
        200: {
            "description": "The ciphertext, byte for byte as the provider uploaded it.",
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": request_example("upload_computation_result"),
                }
            },
            "headers": {
                "ETag": {
                    "schema": {"type": "string"},
                    "description": "The ciphertext's SM3, quoted.",
                    "example": _RESULT["etag"],
                },
                "Content-Length": {"schema": {"type": "integer"}, "example": _RESULT["size"]},
            },
        },
        **signed_errors(
            {
                404: "computation_not_found (also for one that is not yours)",
                409: "not_completed",
                422: "invalid_request",
            }
        ),
    },
)
def download_result(
    computation_id: ComputationIdPath,
    principal: Buyer,
    session: SessionDep,
    store: ResultStoreDep,
) -> FileResponse:
    stored = service.result_for_buyer(session, store, principal, computation_id)
    return FileResponse(
        stored.path,
        media_type="application/octet-stream",
        headers={"ETag": f'"{stored.sm3_hex}"'},
    )
