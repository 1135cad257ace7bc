"""The verifiable log over REST: append, checkpoints, entries, proofs, anchors, log key.

Appending is for authenticated, active participants and takes only statements
that change nothing (``note.*``, ``attestation.*``) by the signer itself, at a
limited rate per key: see :mod:`exchange.raw_append`. Reads are public.

Every error is ``{"code", "message"}``; the codes are listed per route in the
OpenAPI document. Entries and proofs are served for integrated tree sizes
only (up to the latest checkpoint).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import Future
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from exchange.anchoring.browse import anchors_from
from exchange.api.deps import (
    AppenderDep,
    AppendLimiterDep,
    CurrentParticipant,
    LogKeyDep,
    RawAppendBucketsDep,
    SessionDep,
)
from exchange.api.examples import json_body, ok
from exchange.api.responses import error_responses, signed_errors
from exchange.errors import ExchangeError, error_body
from exchange.limits import body_limit
from exchange.log import queries
from exchange.log.appender import Appender, LogUnavailableError
from exchange.log.errors import InvalidIndexError
from exchange.log.schemas import (
    AppendRequest,
    BatchAppended,
    BatchAppendRequest,
    CheckpointBody,
)
from exchange.log.service import (
    Accepted,
    check_submission,
    parse_submission,
    refuse_repeats,
)
from exchange.participants.models import Principal
from exchange.ratelimit import RateLimitedError, TokenBuckets, retry_after_seconds
from exchange.raw_append import check_raw_record, check_raw_sender
from ledger.protocol.log import (
    Anchor,
    Appended,
    ConsistencyProof,
    Entry,
    InclusionProof,
    LogKey,
    PromiseBody,
)
from ledger.records import MAX_SAFE_INTEGER

__all__ = ["router"]

MAX_BATCH_BODY_BYTES = 8 << 20

router = APIRouter(tags=["log"])

_HEX_HASH = re.compile(r"[0-9a-fA-F]{64}")


def _errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for ``statuses``, each described by its ``e<status>`` keyword
    (the codes, see exchange.api.responses)."""
    return error_responses({status: descriptions[f"e{status}"] for status in statuses})


def _appended(accepted: Accepted) -> Appended:
    return Appended(
        index=accepted.index,
        leaf_hash=accepted.promise.leaf_hash.hex(),
        promise=PromiseBody.of(accepted.promise),
    )


@router.get(
    "/.well-known/shancheng/log-key",
    response_model=LogKey,
    summary="The log's SM2 public key",
    responses=ok(200, "get_log_key"),
)
def get_log_key(log_key: LogKeyDep) -> LogKey:
    """The key that signs promises and checkpoints; auditors pin it."""
    return LogKey.of(log_key.public_key())


def _prepare_and_submit(
    appender: Appender, items: list[AppendRequest], principal: Principal, numbered: bool
) -> Future[list[Accepted]]:
    """Parse ``items``, check that ``principal`` may append them (exchange.raw_append),
    verify them and hand them to the appender (runs in a worker thread: SM2
    verification releases the GIL, so requests verify in parallel)."""
    with appender.reserve() as reservation:
        submissions = []
        for position, item in enumerate(items):
            try:
                signed, public_key = parse_submission(item.record, item.public_key)
                check_raw_record(signed, principal)
                submissions.append(check_submission(signed, public_key))
            except ExchangeError as exc:
                if not numbered:
                    raise
                raise type(exc)(f"records[{position}]: {exc.message}") from None
        refuse_repeats(submissions)
        return reservation.submit(submissions)


def _admit(buckets: TokenBuckets, principal: Principal, records: int) -> None:
    """Refuse a participant that may not append (403), or one over its rate (429)."""
    check_raw_sender(principal)
    wait = buckets.take(principal.key_id, records)
    if wait > 0:
        seconds = retry_after_seconds(wait)
        raise RateLimitedError(
            f"key {principal.key_id} appends faster than the log's raw append allows; "
            f"retry in {seconds} s",
            seconds,
        )


def _rate_limited(exc: RateLimitedError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message),
        status_code=exc.status,
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _append(
    appender: Appender | None,
    limiter: anyio.CapacityLimiter | None,
    items: list[AppendRequest],
    principal: Principal,
    *,
    numbered: bool,
) -> list[Accepted]:
    """Verify ``items`` in a worker thread, then store them through the appender
    (group commit) and await the outcome: all or nothing, consecutive indexes.

    At most ``appender.verifiers`` requests hold a worker thread for this at a
    time (the appender admits no more anyway); the others wait here, on the
    event loop, leaving the threadpool to other requests."""
    if appender is None or limiter is None:
        raise LogUnavailableError("the log appender is not running")
    future = await anyio.to_thread.run_sync(
        _prepare_and_submit, appender, items, principal, numbered, limiter=limiter
    )
    return await asyncio.wrap_future(future)


@router.post(
    "/log/records",
    status_code=201,
    response_model=Appended,
    summary="Append a signed record",
    responses={
        **ok(201, "post_record"),
        **signed_errors(
            {
                400: "invalid_record, invalid_public_key, invalid_signature or actor_mismatch "
                "(the public key given is not the record's actor)",
                403: "provider_unverified, record_type_not_allowed (only note.* and "
                "attestation.*), actor_mismatch (the record is not by the request's signer)",
                409: "duplicate_record: the same signed record is already in the log",
                422: "invalid_request: the body is not the expected JSON",
                429: "rate_limited: more than raw_append_rate_per_s records a second from "
                "this key; retry after Retry-After seconds",
                503: "shutting_down (the server is stopping) or log_busy (the database write "
                "lock could not be had in time): retry",
            }
        ),
    },
    openapi_extra=json_body("post_record"),
)
async def post_record(
    body: AppendRequest,
    principal: CurrentParticipant,
    buckets: RawAppendBucketsDep,
    appender: AppenderDep,
    limiter: AppendLimiterDep,
) -> Appended | JSONResponse:
    """Put a statement of yours on the log (a signed request, see docs/api-auth.md):
    a ``note.*`` or ``attestation.*`` record whose actor is you. The exchange's
    actions (orders, listings, deposits, …) are logged only by their endpoints.

    Verify the actor's SM2 signature, store the record at the next index and
    return the log's signed promise to integrate it.

    Concurrent appends are committed together (one transaction, one promise-batch
    signature, one durable commit); each gets its own promise, which carries the
    inclusion proof of its leaf in the batch."""
    try:
        _admit(buckets, principal, 1)
    except RateLimitedError as exc:
        return _rate_limited(exc)
    [accepted] = await _append(appender, limiter, [body], principal, numbered=False)
    return _appended(accepted)


@router.post(
    "/log/records:batch",
    status_code=201,
    response_model=BatchAppended,
    summary="Append several signed records at once",
    responses={
        **ok(201, "post_records"),
        **signed_errors(
            {
                400: "invalid_record, invalid_public_key, invalid_signature, actor_mismatch "
                "(as for one record; the message names the failing position)",
                403: "provider_unverified, record_type_not_allowed, actor_mismatch (as for "
                "one record; the message names the failing position)",
                409: "duplicate_record",
                422: "invalid_request (also for more than 1000 records)",
                429: "rate_limited: each record counts; retry after Retry-After seconds",
                503: "shutting_down or log_busy: retry",
            }
        ),
    },
    openapi_extra=json_body("post_records"),
)
@body_limit(MAX_BATCH_BODY_BYTES)  # a full batch with its PEM keys is a few MiB
async def post_records(
    body: BatchAppendRequest,
    principal: CurrentParticipant,
    buckets: RawAppendBucketsDep,
    appender: AppenderDep,
    limiter: AppendLimiterDep,
) -> BatchAppended | JSONResponse:
    """All or nothing: the records get consecutive indexes in the order given. Each
    must be one ``POST /log/records`` takes; each counts against the rate limit."""
    try:
        _admit(buckets, principal, len(body.records))
    except RateLimitedError as exc:
        return _rate_limited(exc)
    accepted = await _append(appender, limiter, body.records, principal, numbered=True)
    return BatchAppended(appended=[_appended(a) for a in accepted])


@router.get(
    "/log/checkpoint",
    response_model=CheckpointBody,
    summary="The latest signed checkpoint",
    responses={
        **ok(200, "get_latest_checkpoint"),
        **_errors(404, e404="no_checkpoint: nothing integrated yet"),
    },
)
def get_latest_checkpoint(session: SessionDep) -> dict[str, Any]:
    return queries.require_latest_checkpoint(session).to_dict()


@router.get(
    "/log/checkpoints/{tree_size}",
    response_model=CheckpointBody,
    summary="The checkpoint of one tree size",
    responses={
        **ok(200, "get_checkpoint"),
        **_errors(404, 422, e404="checkpoint_not_found", e422="invalid_request"),
    },
)
def get_checkpoint(tree_size: int, session: SessionDep) -> dict[str, Any]:
    return queries.checkpoint_at(session, tree_size).to_dict()


@router.get(
    "/log/entries/{index}",
    response_model=Entry,
    summary="An integrated entry",
    responses={
        **ok(200, "get_entry"),
        **_errors(
            400,
            404,
            422,
            e400="invalid_index (negative)",
            e404="entry_not_found (or not integrated)",
            e422="invalid_request",
        ),
    },
)
def get_entry(index: int, session: SessionDep) -> Entry:
    """The signed record as stored, the actor's key and the log's promise."""
    entry = queries.entry_at(session, index)
    return Entry(
        index=entry.index,
        leaf_hash=entry.leaf_hash.hex(),
        record=queries.entry_record(entry),
        public_key=entry.actor_public_key,
        promise=PromiseBody.of(queries.promise_of(session, entry)),
    )


@router.get(
    "/log/proofs/inclusion",
    response_model=InclusionProof,
    summary="Inclusion proof of an entry in a checkpointed tree",
    responses={
        **ok(200, "get_inclusion_proof"),
        **_errors(
            400,
            404,
            422,
            e400="invalid_index, invalid_tree_size (< 1 or beyond the latest checkpoint)",
            e404="entry_not_found, or no_checkpoint when tree_size is omitted",
            e422="invalid_request",
        ),
    },
)
def get_inclusion_proof(
    session: SessionDep,
    tree_size: Annotated[
        int | None, Query(description="Tree size; default: the latest checkpoint's.")
    ] = None,
    index: Annotated[int | None, Query(description="Leaf index.")] = None,
    leaf_hash: Annotated[
        str | None, Query(description="Leaf hash (hex), instead of index.")
    ] = None,
) -> InclusionProof:
    """RFC 9162 §2.1.3 audit path in the SM3 tree (docs/bundle-v1.md, "The Merkle tree");
    verify it (RFC 9162 §2.1.3.2) against the root of the checkpoint of ``tree_size``."""
    digest = None
    if leaf_hash is not None:
        if not _HEX_HASH.fullmatch(leaf_hash):
            raise InvalidIndexError("leaf_hash must be 64 hex digits")
        digest = bytes.fromhex(leaf_hash)
    if (index is None) == (digest is None):
        raise InvalidIndexError("give exactly one of index and leaf_hash")
    if tree_size is None:
        tree_size = queries.require_latest_checkpoint(session).tree_size
    proof = queries.inclusion_proof(session, tree_size, index=index, leaf_hash=digest)
    return InclusionProof(
        index=proof.index,
        tree_size=proof.tree_size,
        leaf_hash=proof.leaf_hash.hex(),
        hashes=[h.hex() for h in proof.hashes],
    )


@router.get(
    "/log/proofs/consistency",
    response_model=ConsistencyProof,
    summary="Consistency proof between two checkpointed tree sizes",
    responses={
        **ok(200, "get_consistency_proof"),
        **_errors(
            400,
            422,
            e400="invalid_tree_size or invalid_range (first > second)",
            e422="invalid_request",
        ),
    },
)
def get_consistency_proof(
    session: SessionDep,
    first: Annotated[int, Query(description="The older tree size (>= 1).")],
    second: Annotated[int, Query(description="The newer tree size (<= latest checkpoint).")],
) -> ConsistencyProof:
    """RFC 9162 §2.1.4 proof that the tree of ``first`` leaves is a prefix of the tree of
    ``second`` leaves; verify it (RFC 9162 §2.1.4.2) against the roots of the checkpoints
    of both sizes."""
    proof = queries.consistency_proof(session, first, second)
    return ConsistencyProof(
        first=proof.first, second=proof.second, hashes=[h.hex() for h in proof.hashes]
    )


@router.get(
    "/log/anchors",
    response_model=list[Anchor],
    summary="Checkpoints chosen for anchoring and their chain state",
    responses={**ok(200, "get_anchors"), **_errors(422, e422="invalid_request")},
)
def get_anchors(
    session: SessionDep,
    start: Annotated[
        int, Query(ge=0, le=MAX_SAFE_INTEGER, description="Smallest tree size to list.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[Anchor]:
    rows = anchors_from(session, start=start, limit=limit)
    return [
        Anchor(
            tree_size=row.tree_size,
            root=row.root.hex(),
            state=row.state,
            chain_id=row.chain_id,
            registry_address=row.registry_address,
            tx_hash=row.tx_hash,
            block_number=row.block_number,
            block_hash=row.block_hash,
        )
        for row in rows
    ]
