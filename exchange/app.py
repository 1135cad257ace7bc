"""The composition root: :func:`create_app` builds everything the exchange runs on
and wires it together, in one place.

It makes the engine (its database migrated to head by Alembic), the log key, the
request authenticator (with the configured operators), the routers and middleware,
and the background services the lifespan starts (appender, sequencer,
auto-acceptor, anchoring worker, event feed watcher, webhook worker). What it built is kept on
``app.state`` (``settings``, ``engine``, ``session_factory``, ``log_key``,
``authenticator``, ``appender``, ``sequencer``, ``anchoring``, ``auto_acceptor``,
``overdue_refunder``, ``unanswered_refuser``, ``event_watcher``, ``event_streams``,
``webhook_dispatcher``, ``metrics``; tests read them there) and is
handed to the routes only through the dependencies of :mod:`exchange.api.deps`,
which tests can swap with ``app.dependency_overrides``. No other module reads
``app.state``, and no domain package imports :mod:`exchange.api`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Session

from exchange.anchoring.lock import LockLostError, WorkerLock, worker_lock
from exchange.anchoring.service import AnchoringService
from exchange.api import (
    accounts,
    certificates,
    computations,
    content,
    crossborder,
    deliverables,
    delivery,
    events,
    explorer,
    health,
    listings,
    log,
    metrics,
    orders,
    participants,
    quality,
    quotes,
    receipts,
    reference_prices,
    webhooks,
    withdrawals,
    workflows,
)
from exchange.api.deps import StreamCount
from exchange.api.examples import install_examples
from exchange.api.responses import install_common_errors
from exchange.auth.verifier import Authenticator
from exchange.computations.expiry import UnansweredRefuser
from exchange.db import make_engine
from exchange.errors import install_error_handlers, install_internal_error_guard
from exchange.events.watcher import FeedWatcher
from exchange.json_body import install_strict_json_body
from exchange.keys import load_log_key
from exchange.limits import install_body_limit
from exchange.log.appender import Appender
from exchange.log.sequencer import Sequencer
from exchange.metrics.exposition import Metrics, multiprocess_dir
from exchange.metrics.instruments import observe_batch
from exchange.migrations import ensure_schema
from exchange.observability.log_format import configure_structlog
from exchange.observability.requests import install_request_observer
from exchange.orders.lifecycle import AutoAcceptor
from exchange.orders.overdue import OverdueRefunder
from exchange.participants.operators import Operators
from exchange.settings import Settings
from exchange.webhooks.dispatcher import WebhookDispatcher

API_DESCRIPTION = """
Shancheng (山城) Data Exchange. Every record is signed with SM2, hashed with SM3
into an append-only Merkle log, and the log's checkpoints are anchored to an EVM
chain, so any receipt can be verified without trusting the exchange.

Errors are JSON objects `{"code": "...", "message": "..."}` with a matching HTTP status.
"""

OPENAPI_TAGS = [
    {"name": "operations", "description": "Health and service facts."},
    {
        "name": "log",
        "description": "The SM3 Merkle log: append signed records, read signed "
        "checkpoints, entries, inclusion and consistency proofs (RFC 9162), anchors.",
    },
    {"name": "receipts", "description": "Receipt bundles (v1) for offline audit."},
    {
        "name": "participants",
        "description": "Register an SM2 key as provider, buyer or auditor; operator approval "
        "and suspension. Requests are signed with RFC 9421 HTTP Message Signatures, "
        "alg sm2-sm3 (docs/api-auth.md).",
    },
    {
        "name": "listings",
        "description": "Data product registration (数据产品登记): draft, submit, review, "
        "publish or reject, delist, content versions. Each change is a signed record.",
    },
    {
        "name": "accounts",
        "description": "Integer fen balances (available, held in escrow), operator deposits "
        "(deposit.credited records) and the append-only movement ledger.",
    },
    {
        "name": "withdrawals",
        "description": "Payouts: a participant's withdrawal.requested holds available funds; "
        "an operator records it paid (withdrawal.paid, with the bank transfer's reference) "
        "or rejected (withdrawal.rejected, the amount released). Idempotency-Key on each POST.",
    },
    {
        "name": "orders",
        "description": "Exchange-signed quotes; orders (order.placed, buyer-signed) that move "
        "the price into escrow atomically with their log record; limited offers never "
        "oversell. Money-moving POSTs take an Idempotency-Key header.",
    },
    {
        "name": "content",
        "description": "Providers upload a listing version's dataset (streamed; SM3 checked "
        "against the listing's digest; SM4-GCM at rest). See docs/custody.md.",
    },
    {
        "name": "delivery",
        "description": "Buyers receive the content key in an SM2 envelope (delivery.issued, "
        "logged by the exchange) and download the ciphertext with HTTP Range.",
    },
    {
        "name": "computations",
        "description": "Queries on provider-held data (computation.requested, buyer-signed), "
        "answered by the provider's agent (computation.completed / .refused) with a result "
        "encrypted to the buyer. See docs/computations.md.",
    },
    {
        "name": "policies",
        "description": "Usage policies are enforced on every order (422 policy_violation "
        "naming the clause); operators record cross-border assessments "
        "(crossborder.assessed). See docs/policies.md.",
    },
    {
        "name": "events",
        "description": "What happened to your orders, settlements and the log's anchors: "
        "a cursor-paged JSON feed and Server-Sent Events resumable with Last-Event-ID "
        "(docs/events.md).",
    },
    {
        "name": "webhooks",
        "description": "The same events POSTed to your URL, signed by the exchange (RFC 9421, "
        "sm2-sm3, the log key), retried with backoff; at least once, in order.",
    },
]

ROUTERS = (
    health.router,
    log.router,
    receipts.router,
    participants.router,
    listings.router,
    reference_prices.router,
    certificates.router,
    accounts.router,
    withdrawals.router,
    quotes.router,
    orders.router,
    workflows.router,
    content.router,
    delivery.router,
    computations.router,
    quality.router,
    deliverables.router,
    crossborder.router,
    events.router,
    webhooks.router,
)
"""Every route of the exchange, in the order the OpenAPI document lists them."""


class BackgroundService(Protocol):
    """A worker thread that lives as long as the app: the starter starts it."""

    def stop(self) -> None: ...


ServiceStarter = Callable[[FastAPI], BackgroundService | None]
"""Starts one background service for the app, or returns ``None`` when it is not wanted."""


def _start_appender(app: FastAPI) -> BackgroundService | None:
    settings: Settings = app.state.settings
    appender = Appender(
        app.state.session_factory,
        app.state.log_key,
        max_batch=settings.append_max_batch,
        linger=settings.append_linger_ms / 1000,
        verifiers=settings.append_verifiers,
        engine=app.state.engine,
        on_batch=observe_batch,
    )
    appender.start()
    app.state.appender = appender
    # Requests wait for one of the appender's verifier slots on the event loop, not
    # in a worker thread (see exchange.api.log); the limiter belongs to this loop.
    app.state.append_limiter = anyio.CapacityLimiter(appender.verifiers)
    return appender


def _start_sequencer(app: FastAPI) -> BackgroundService | None:
    settings: Settings = app.state.settings
    if not settings.sequencer_enabled:
        return None
    # One sequencer across the worker processes on this database: the holder of
    # the sequencer lock (the others stand by; integrate() is safe anyway).
    lock = worker_lock(app.state.engine, "sequencer")
    sequencer = Sequencer(
        app.state.session_factory,
        app.state.log_key,
        interval=settings.sequencer_interval,
        max_batch=settings.sequencer_max_batch,
        elected=functools.partial(_holds, lock),
    )
    sequencer.start()
    app.state.sequencer = sequencer
    return _ReleasingLock(sequencer, lock)


def _holds(lock: WorkerLock) -> bool:
    """Take ``lock`` if free; ``True`` while this process holds it."""
    if not lock.try_acquire():
        return False
    try:
        lock.ensure_held()
    except LockLostError:
        lock.release()
        return False
    return True


class _ReleasingLock:
    """Stops ``service``, then releases the lock it was elected by."""

    def __init__(self, service: BackgroundService, lock: WorkerLock) -> None:
        self._service, self._lock = service, lock

    def stop(self) -> None:
        self._service.stop()
        self._lock.release()


def _start_anchoring(app: FastAPI) -> BackgroundService | None:
    # None when no chain is configured or another worker holds the lock.
    anchoring = AnchoringService.start_in_app(app.state.settings, app.state.engine)
    app.state.anchoring = anchoring
    return anchoring


def _start_auto_accept(app: FastAPI) -> BackgroundService | None:
    # Delivered orders past their acceptance deadline: accepted and settled by the
    # exchange (exchange.orders.lifecycle); safe to run in every worker process.
    settings: Settings = app.state.settings
    acceptor = AutoAcceptor(
        app.state.session_factory,
        app.state.log_key,
        settings,
        interval=settings.auto_accept_interval_s,
    )
    acceptor.start()
    app.state.auto_acceptor = acceptor
    return acceptor


def _start_overdue_refunds(app: FastAPI) -> BackgroundService | None:
    # Paid orders past their delivery deadline: refunded in full by the exchange
    # (exchange.orders.overdue); like auto-accept, safe in every worker process.
    refunder = OverdueRefunder(
        app.state.session_factory,
        app.state.log_key,
        interval=app.state.settings.auto_accept_interval_s,
    )
    refunder.start()
    app.state.overdue_refunder = refunder
    return refunder


def _start_unanswered_refusals(app: FastAPI) -> BackgroundService | None:
    # Computations no agent answered within the listing's delivery window: refused
    # by the exchange, the query given back (exchange.computations.expiry).
    refuser = UnansweredRefuser(
        app.state.session_factory,
        app.state.log_key,
        interval=app.state.settings.auto_accept_interval_s,
    )
    refuser.start()
    app.state.unanswered_refuser = refuser
    return refuser


def _start_event_watcher(app: FastAPI) -> BackgroundService | None:
    # Follows the feed's head (and records final anchors as events) for the streams
    # and the webhook worker of this process.
    watcher = FeedWatcher(app.state.session_factory, app.state.settings.events_poll_s)
    watcher.start()
    app.state.event_watcher = watcher
    return watcher


def _start_webhooks(app: FastAPI) -> BackgroundService | None:
    settings: Settings = app.state.settings
    if not settings.webhooks_enabled:
        return None
    dispatcher = WebhookDispatcher(
        app.state.session_factory,
        app.state.log_key,
        settings,
        app.state.event_watcher,
    )
    dispatcher.start()
    app.state.webhook_dispatcher = dispatcher
    return dispatcher


DEFAULT_SERVICES: tuple[ServiceStarter, ...] = (
    _start_appender,
    _start_sequencer,
    _start_auto_accept,
    _start_overdue_refunds,
    _start_unanswered_refusals,
    _start_anchoring,
    _start_event_watcher,
    _start_webhooks,
)
"""Started in this order when the app starts, stopped in reverse when it stops (the
appender last: it commits the appends still queued before the app stops)."""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: Engine = app.state.engine
    started: list[BackgroundService] = []
    try:
        for starter in app.state.service_starters:
            service = starter(app)
            if service is not None:
                started.append(service)
        yield
    finally:
        for service in reversed(started):
            service.stop()
        engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        ensure_schema(engine)  # Alembic, the only schema authority: migrate to head
    except BaseException:
        engine.dispose()
        raise

    app = FastAPI(
        title="Shancheng Data Exchange",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=_lifespan,
        openapi_tags=OPENAPI_TAGS,
        docs_url=None,  # /docs and /redoc: the explorer's, on local assets (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = functools.partial(Session, engine)
    app.state.log_key = load_log_key(settings)
    app.state.authenticator = Authenticator(
        engine, Operators.from_settings(settings), skew_s=settings.auth_clock_skew_s
    )
    app.state.content_store = None  # opened on first use (exchange.api.deps)
    app.state.service_starters = list(DEFAULT_SERVICES)
    app.state.appender = None
    app.state.append_limiter = None
    app.state.sequencer = None
    app.state.anchoring = None
    app.state.auto_acceptor = None
    app.state.overdue_refunder = None
    app.state.unanswered_refuser = None
    app.state.event_watcher = None
    app.state.event_streams = StreamCount()
    app.state.webhook_dispatcher = None
    app.state.metrics = Metrics(app.state.session_factory, multiprocess_dir())
    configure_structlog()
    install_error_handlers(app)
    # Middleware, innermost first: strict JSON bodies are read within the size limit,
    # and the last-resort guard wraps everything.
    install_strict_json_body(app)
    install_body_limit(app, settings.max_request_bytes)
    install_internal_error_guard(app)
    install_request_observer(app)  # outermost: ids, logs and counts every answer
    install_common_errors(app)  # documents invalid_json and internal in OpenAPI
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(metrics.router)  # /metrics, for scrapers (no OpenAPI)
    app.include_router(explorer.router)  # the web pages at /, /log, /verify, … (no OpenAPI)
    # last: puts the examples back as declared (FastAPI's encoder drops their nulls)
    install_examples(app)
    return app
