"""The FastAPI application factory."""

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
from exchange.api import health, log, receipts
from exchange.api import listings as listings_api
from exchange.api import participants as participants_api
from exchange.api.responses import install_common_errors
from exchange.auth.setup import install_auth
from exchange.db import make_engine
from exchange.errors import install_error_handlers, install_internal_error_guard
from exchange.json_body import install_strict_json_body
from exchange.keys import load_log_key
from exchange.limits import install_body_limit
from exchange.listings.search import create_search_tables
from exchange.log.appender import Appender
from exchange.log.models import create_log_tables
from exchange.log.sequencer import Sequencer
from exchange.migrations import ensure_schema
from exchange.settings import Settings

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
]


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
    from exchange.orders.lifecycle import AutoAcceptor

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


DEFAULT_SERVICES: tuple[ServiceStarter, ...] = (
    _start_appender,
    _start_sequencer,
    _start_auto_accept,
    _start_anchoring,
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
    ensure_schema(engine)  # Alembic: migrate to head (a fresh database is marked at head)
    create_log_tables(engine)

    app = FastAPI(
        title="Shancheng Data Exchange",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=_lifespan,
        openapi_tags=OPENAPI_TAGS,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = functools.partial(Session, engine)
    app.state.log_key = load_log_key(settings)
    app.state.service_starters = list(DEFAULT_SERVICES)
    app.state.appender = None
    app.state.append_limiter = None
    app.state.sequencer = None
    app.state.anchoring = None
    app.state.auto_acceptor = None
    install_error_handlers(app)
    # Middleware, innermost first: strict JSON bodies are read within the size limit,
    # and the last-resort guard wraps everything.
    install_strict_json_body(app)
    install_body_limit(app, settings.max_request_bytes)
    install_internal_error_guard(app)
    install_common_errors(app)  # documents invalid_json and internal in OpenAPI
    app.include_router(health.router)
    app.include_router(log.router)
    app.include_router(receipts.router)
    # participants, request authentication, listings (exchange/auth, participants, listings)
    install_auth(app, settings, engine)
    create_search_tables(engine)  # the listing search index (exchange/listings/search_index)
    app.include_router(participants_api.router)
    app.include_router(listings_api.router)
    # accounts, quotes, orders with escrow, idempotency keys (exchange/accounts, orders)
    from exchange.orders.setup import install_orders

    install_orders(app, engine)
    # content upload, delivery envelopes, ciphertext download (exchange/delivery, api/content)
    from exchange.delivery.setup import install_delivery

    install_delivery(app)
    # events (GET /events, SSE) and webhooks, with their services (exchange/events, webhooks)
    from exchange.events.setup import install_events

    install_events(app)
    # last: puts the examples back as declared (FastAPI's encoder drops their nulls)
    from exchange.api.examples import install_examples

    install_examples(app)
    return app
