"""The app's FastAPI dependencies: what :func:`exchange.app.create_app` built, handed
to the routes as ``Annotated`` parameters.

    @router.post("/listings/{listing_id}/quotes")
    def quote_listing(..., session: SessionDep, log_key: LogKeyDep, settings: SettingsDep):

This module is the one place that reads ``app.state``, where the composition
root (:mod:`exchange.app`) keeps what it built; the routes and everything below
them receive those objects as parameters. Tests swap any of them with
``app.dependency_overrides[get_settings] = ...`` (``get_engine``, ``get_log_key``,
``get_authenticator``, ``get_appender``, ``get_content_store``,
``current_participant``, …).

A few objects are made on first use: the content store (so that an exchange
that never handles content creates no master key), and the capacity limiters
and rate buckets, which belong to the event loop that uses them.

Authentication: :data:`CurrentParticipant` (401/403 unless the request is
signed by an active participant or operator), :data:`OptionalParticipant`
(``None`` for an unsigned request), :func:`require_role` (403 for another
role) and :data:`StreamingParticipant` for an endpoint that streams a large
body: the signature is checked over the headers at once and the body check
(:class:`~exchange.auth.verifier.StreamedBody`) is handed over to run while it
streams.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from exchange.auth.authorisation import check_active, check_role
from exchange.auth.errors import AuthenticationError
from exchange.auth.verifier import Authenticator, RequestHead, RequestParts, StreamedBody
from exchange.content import ContentStore, content_store_from_settings
from exchange.content.deliverables import DeliverableStore
from exchange.events.watcher import FeedWatcher
from exchange.log.appender import Appender
from exchange.log.batch import commit_pending, run_until_committed
from exchange.log.sequencer import SessionFactory
from exchange.metrics.exposition import Metrics
from exchange.participants.models import Principal, Role
from exchange.participants.operators import Operators
from exchange.ratelimit import TokenBuckets
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "UPLOAD_THREADS",
    "AppendLimiterDep",
    "AppenderDep",
    "AuthenticatorDep",
    "ContentStoreDep",
    "CurrentParticipant",
    "DeliverableStoreDep",
    "EngineDep",
    "EventStreamsDep",
    "EventWatcherDep",
    "LogKeyDep",
    "MetricsDep",
    "OperatorsDep",
    "OptionalParticipant",
    "QuoteBucketsDep",
    "RawAppendBucketsDep",
    "SessionDep",
    "SessionFactoryDep",
    "SettingsDep",
    "SignedStream",
    "StreamCount",
    "StreamingParticipant",
    "UploadLimiterDep",
    "current_participant",
    "get_append_limiter",
    "get_appender",
    "get_authenticator",
    "get_content_store",
    "get_deliverable_store",
    "get_engine",
    "get_event_streams",
    "get_event_watcher",
    "get_log_key",
    "get_operators",
    "get_quote_buckets",
    "get_raw_append_buckets",
    "get_session",
    "get_session_factory",
    "get_settings",
    "get_upload_limiter",
    "optional_participant",
    "request_parts",
    "require_role",
    "streaming_participant",
    "target_uri",
]

# -- what the composition root built -------------------------------------------------


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_log_key(request: Request) -> SM2PrivateKey:
    """The log's SM2 private key: signs promises, checkpoints, quotes and the
    exchange's own records."""
    key: SM2PrivateKey = request.app.state.log_key
    return key


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
LogKeyDep = Annotated[SM2PrivateKey, Depends(get_log_key)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


async def get_operators(authenticator: AuthenticatorDep) -> Operators:
    """The configured operators, as the authenticator knows them."""
    return authenticator.operators


OperatorsDep = Annotated[Operators, Depends(get_operators)]


def get_session(engine: EngineDep) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_appender(request: Request) -> Appender | None:
    """The log's group-committing appender, ``None`` when it is not running (the
    app's lifespan starts it; a route that needs it answers 503 ``log_unavailable``)."""
    appender: Appender | None = request.app.state.appender
    return appender


AppenderDep = Annotated[Appender | None, Depends(get_appender)]


async def get_append_limiter(
    request: Request, appender: AppenderDep
) -> anyio.CapacityLimiter | None:
    """At most ``appender.verifiers`` appends hold a worker thread at a time: the
    lifespan makes the limiter with the appender (it is made here, on the event
    loop, for an appender the lifespan did not start). ``None`` without an appender."""
    if appender is None:
        return None
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "append_limiter", None)
    if limiter is None:
        limiter = state.append_limiter = anyio.CapacityLimiter(appender.verifiers)
    return limiter


AppendLimiterDep = Annotated[anyio.CapacityLimiter | None, Depends(get_append_limiter)]


async def get_raw_append_buckets(request: Request, settings: SettingsDep) -> TokenBuckets:
    """The raw append's per-key rate limit (made on first use, on the app's event
    loop: no race)."""
    state = request.app.state
    buckets: TokenBuckets | None = getattr(state, "raw_append_buckets", None)
    if buckets is None:
        buckets = state.raw_append_buckets = TokenBuckets(
            settings.raw_append_rate_per_s, settings.raw_append_burst
        )
    return buckets


RawAppendBucketsDep = Annotated[TokenBuckets, Depends(get_raw_append_buckets)]


async def get_quote_buckets(request: Request, settings: SettingsDep) -> TokenBuckets:
    """The keys' quote allowances (made on first use, on the event loop: no race)."""
    state = request.app.state
    buckets: TokenBuckets | None = getattr(state, "quote_buckets", None)
    if buckets is None:
        buckets = state.quote_buckets = TokenBuckets(
            settings.quote_rate_per_s, settings.quote_burst
        )
    return buckets


QuoteBucketsDep = Annotated[TokenBuckets, Depends(get_quote_buckets)]

_content_store_lock = threading.Lock()


def get_content_store(request: Request, settings: SettingsDep) -> ContentStore:
    """The app's content store (``content_dir``, ``content_master_key_file``),
    opened on first use (in a worker thread: it may create the master key)."""
    state = request.app.state
    store: ContentStore | None = getattr(state, "content_store", None)
    if store is None:
        with _content_store_lock:
            store = getattr(state, "content_store", None)
            if store is None:
                store = content_store_from_settings(settings)
                state.content_store = store
    return store


ContentStoreDep = Annotated[ContentStore, Depends(get_content_store)]


def get_deliverable_store(store: ContentStoreDep) -> DeliverableStore:
    """Provider-custody deliverables, beside the content store (``deliverables/``)."""
    return DeliverableStore(store.root / "deliverables")


DeliverableStoreDep = Annotated[DeliverableStore, Depends(get_deliverable_store)]

UPLOAD_THREADS = 16
"""Most uploads streaming at once per worker process. Each holds a worker thread
for its whole duration, so they get their own limiter rather than starving the
thread pool every synchronous endpoint runs in; further uploads wait (their
bodies held back by TCP flow control)."""


async def get_upload_limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "upload_limiter", None)
    if limiter is None:  # created on the event loop, where it is used
        limiter = anyio.CapacityLimiter(UPLOAD_THREADS)
        state.upload_limiter = limiter
    return limiter


UploadLimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_upload_limiter)]


async def get_session_factory(request: Request) -> SessionFactory:
    factory: SessionFactory = request.app.state.session_factory
    return factory


SessionFactoryDep = Annotated[SessionFactory, Depends(get_session_factory)]


async def get_metrics(request: Request) -> Metrics:
    """The metrics registry ``/metrics`` renders and the operator page reads."""
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_event_watcher(request: Request) -> FeedWatcher | None:
    """The watcher of the event feed's head, ``None`` when the app runs without its
    services (no lifespan)."""
    watcher: FeedWatcher | None = request.app.state.event_watcher
    return watcher


EventWatcherDep = Annotated[FeedWatcher | None, Depends(get_event_watcher)]


class StreamCount:
    """Open SSE responses of this process (``app.state.event_streams``; the event loop
    alone changes it)."""

    def __init__(self) -> None:
        self.open = 0


async def get_event_streams(request: Request) -> StreamCount:
    streams: StreamCount = request.app.state.event_streams
    return streams


EventStreamsDep = Annotated[StreamCount, Depends(get_event_streams)]

# -- who sent the request ------------------------------------------------------------


def target_uri(request: Request, settings: Settings) -> str:
    """The request's absolute URI as the client sent it (percent-encoding kept):
    ``public_origin`` from settings when set (behind a proxy), else the scheme
    and ``Host`` header the server saw."""
    scope = request.scope
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    path = raw.decode("latin-1").split("?", 1)[0]
    query = scope.get("query_string", b"").decode("latin-1")
    origin = settings.public_origin
    if origin is None:
        host = request.headers.get("host")
        if not host:
            raise AuthenticationError("the request has no Host header")
        origin = f"{scope.get('scheme', 'http')}://{host}"
    return f"{origin.rstrip('/')}{path}{'?' + query if query else ''}"


async def request_parts(request: Request, settings: SettingsDep) -> RequestParts:
    return RequestParts(
        method=request.method,
        target_uri=target_uri(request, settings),
        headers=request.headers.items(),
        body=await request.body(),
    )


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@asynccontextmanager
async def _authenticated(
    request: Request, settings: Settings, authenticator: Authenticator, session: Session
) -> AsyncIterator[Principal]:
    """The authenticated, not suspended participant (or operator); 401/403 otherwise.

    A read stores its nonce at once. A write's nonce goes into the transaction of
    its effect when that is a batch item made from the request's ``session``
    (:func:`exchange.log.batch.run_until_committed`); otherwise, or if that item
    was refused, it is stored as the block ends (the endpoint returned, the
    response is not sent yet)."""
    parts = await request_parts(request, settings)
    if request.method in _READ_METHODS:
        principal = await run_in_threadpool(authenticator.authenticate, parts)
        yield check_active(principal)
        return
    principal, claim = await run_in_threadpool(authenticator.authenticate_deferred, parts)
    run_until_committed(session, claim.store)
    try:
        yield check_active(principal)
    finally:
        await run_in_threadpool(commit_pending, session)


async def current_participant(
    request: Request, settings: SettingsDep, authenticator: AuthenticatorDep, session: SessionDep
) -> AsyncIterator[Principal]:
    """The authenticated, not suspended participant (or operator); 401/403 otherwise."""
    async with _authenticated(request, settings, authenticator, session) as principal:
        yield principal


async def optional_participant(
    request: Request, settings: SettingsDep, authenticator: AuthenticatorDep, session: SessionDep
) -> AsyncIterator[Principal | None]:
    """Like :func:`current_participant`, but ``None`` for an unsigned request (a
    request that tries to sign and fails is still refused)."""
    if "signature" not in request.headers and "signature-input" not in request.headers:
        yield None
        return
    async with _authenticated(request, settings, authenticator, session) as principal:
        yield principal


CurrentParticipant = Annotated[Principal, Depends(current_participant, scope="function")]
OptionalParticipant = Annotated[Principal | None, Depends(optional_participant, scope="function")]


@dataclass(frozen=True, slots=True)
class SignedStream:
    """A request authenticated by its signed headers; ``body`` must check its
    streamed bytes (``update`` each chunk, ``verify`` at the end) before the
    endpoint keeps any of them."""

    principal: Principal
    body: StreamedBody


async def streaming_participant(
    request: Request, settings: SettingsDep, authenticator: AuthenticatorDep
) -> SignedStream:
    """Like :func:`current_participant` for an endpoint that streams its body:
    the signature is checked over the headers now, the body is left unread."""
    head = RequestHead(
        method=request.method,
        target_uri=target_uri(request, settings),
        headers=request.headers.items(),
    )
    principal, body = await run_in_threadpool(authenticator.authenticate_head, head)
    return SignedStream(check_active(principal), body)


StreamingParticipant = Annotated[SignedStream, Depends(streaming_participant)]


def require_role(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the current participant, refused (403 ``role_forbidden``)
    unless its role is one of ``roles``."""

    async def guard(principal: CurrentParticipant) -> Principal:
        return check_role(principal, *roles)

    return guard
