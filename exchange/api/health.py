"""``GET /health``: is the database reachable, and is the anchor chain? The answer's
shape is :mod:`ledger.protocol.health`, which the SDK parses."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from contracts.chain import ChainClient
from contracts.errors import ChainError
from exchange.api.deps import EngineDep, SettingsDep
from exchange.api.examples import ok, response_example
from exchange.db import redact_url
from ledger.protocol.health import ChainStatus, DatabaseStatus, Health

router = APIRouter(tags=["operations"])


def database_status(engine: Engine) -> DatabaseStatus:
    url = redact_url(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc)
        return DatabaseStatus(ok=False, backend=engine.dialect.name, url=url, detail=detail)
    return DatabaseStatus(ok=True, backend=engine.dialect.name, url=url)


def chain_status(rpc_url: str | None, registry_address: str | None) -> ChainStatus:
    if not rpc_url:
        return ChainStatus(ok=False, configured=False, detail="no chain RPC URL configured")
    status = ChainStatus(
        ok=False, configured=True, rpc_url=rpc_url, registry_address=registry_address
    )
    try:
        chain = ChainClient(rpc_url, timeout=3.0)
        status = replace(status, chain_id=chain.chain_id())
        status = replace(status, block_number=chain.block_number())
        if registry_address:
            status = replace(status, registry_deployed=len(chain.code_at(registry_address)) > 0)
    except ChainError as exc:
        return replace(status, detail=str(exc))
    if registry_address and not status.registry_deployed:
        return replace(status, detail=f"no contract at {registry_address}")
    return replace(status, ok=True)


@router.get(
    "/health",
    response_model=Health,
    summary="Database and chain status",
    responses={
        **ok(200, "get_health"),
        503: {
            "model": Health,
            "description": "Database or configured chain unreachable",
            "content": {"application/json": {"example": response_example("get_health_degraded")}},
        },
    },
)
async def get_health(response: Response, settings: SettingsDep, engine: EngineDep) -> Health:
    """200 when the database answers and the configured chain (if any) holds the registry."""
    database = await run_in_threadpool(database_status, engine)
    chain = await run_in_threadpool(chain_status, settings.rpc_url, settings.registry_address)
    healthy = database.ok and (chain.ok or not chain.configured)
    if not healthy:
        response.status_code = 503
    return Health(status="ok" if healthy else "degraded", database=database, chain=chain)
