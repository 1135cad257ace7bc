"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exchange.api import health
from exchange.db import make_engine
from exchange.errors import install_error_handlers
from exchange.settings import Settings

API_DESCRIPTION = """
Shancheng (山城) Data Exchange. Every record is signed with SM2, hashed with SM3
into an append-only Merkle log, and the log's checkpoints are anchored to an EVM
chain, so any receipt can be verified without trusting the exchange.

Errors are JSON objects `{"code": "...", "message": "..."}` with a matching HTTP status.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="Shancheng Data Exchange",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[{"name": "operations", "description": "Health and service facts."}],
    )
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.include_router(health.router)
    return app
