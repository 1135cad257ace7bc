"""The request body size limit (exchange.limits): 413 ``payload_too_large`` for a
declared Content-Length over the limit (nothing read) and for a streamed body that
crosses it (reading stops there); routes opt out or set their own limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request
from starlette.types import Message, Scope

from exchange.app import create_app
from exchange.errors import install_error_handlers
from exchange.limits import body_limit, install_body_limit
from exchange.settings import Settings

LIMIT = 1000
CHUNK = 256


def _small_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_body_limit(app, LIMIT)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/json")
    async def parsed(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    @app.post("/upload")
    @body_limit(None)
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @app.post("/medium")
    @body_limit(4 * LIMIT)
    async def medium(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return app


def _call(
    app: FastAPI, path: str, *, total: int, declared: bool
) -> tuple[int, dict[str, Any], int]:
    """POST ``total`` bytes in CHUNK pieces straight through ASGI; returns the status,
    the JSON body and how many body bytes the app pulled from the server."""
    headers = [(b"content-type", b"application/json")]
    if declared:
        headers.append((b"content-length", str(total).encode()))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        size = min(CHUNK, total - pulled)
        pulled += size
        return {"type": "http.request", "body": b"x" * size, "more_body": pulled < total}

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body), pulled


def _too_large(status: int, body: dict[str, Any]) -> None:
    assert status == 413
    assert body["code"] == "payload_too_large"
    assert set(body) == {"code", "message"}


def test_declared_length_over_the_limit_is_refused_without_reading() -> None:
    status, body, pulled = _call(_small_app(), "/echo", total=100 * LIMIT, declared=True)
    _too_large(status, body)
    assert pulled == 0


def test_streamed_body_is_refused_where_it_crosses_the_limit() -> None:
    app = _small_app()
    for path in ("/echo", "/json"):
        status, body, pulled = _call(app, path, total=10_000 * LIMIT, declared=False)
        _too_large(status, body)
        assert pulled <= LIMIT + CHUNK  # it stopped reading at the limit


def test_a_body_at_the_limit_passes() -> None:
    status, body, _ = _call(_small_app(), "/echo", total=LIMIT, declared=True)
    assert (status, body) == (200, {"size": LIMIT})
    status, body, _ = _call(_small_app(), "/echo", total=LIMIT, declared=False)
    assert (status, body) == (200, {"size": LIMIT})


def test_routes_opt_out_or_set_their_own_limit() -> None:
    app = _small_app()
    for declared in (True, False):
        status, body, _ = _call(app, "/upload", total=50 * LIMIT, declared=declared)
        assert (status, body) == (200, {"size": 50 * LIMIT})
        status, body, _ = _call(app, "/medium", total=3 * LIMIT, declared=declared)
        assert (status, body) == (200, {"size": 3 * LIMIT})
        status, body, _ = _call(app, "/medium", total=5 * LIMIT, declared=declared)
        _too_large(status, body)


def test_the_exchange_refuses_large_bodies_over_http(tmp_path: Path, live_server: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path, sequencer_enabled=False, max_request_bytes=LIMIT))
    schema = app.openapi()
    assert "413" in schema["paths"]["/participants"]["post"]["responses"]

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):
            yield b" " * CHUNK

    with live_server(app) as url, httpx.Client(base_url=url) as client:
        declared = client.post(
            "/participants",
            content=b" " * (10 * LIMIT),
            headers={"content-type": "application/json"},
        )
        _too_large(declared.status_code, declared.json())
    # a fresh connection: the refused one is closed by the server
    with live_server(app) as url, httpx.Client(base_url=url) as client:
        streamed = client.post(
            "/participants", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        _too_large(streamed.status_code, streamed.json())
