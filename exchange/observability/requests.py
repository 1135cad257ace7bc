"""Every HTTP request gets an id, a log line and its metrics: :class:`RequestObserver`.

The id is the client's ``X-Request-Id`` when well formed
(:func:`ledger.protocol.request_id.is_well_formed_request_id`), a fresh random one
otherwise; it is bound in structlog's context variables while the request is served
(every log line about it carries ``request_id``) and returned in the
``X-Request-Id`` header of the answer, whatever it is: a refusal, a 404, the last-resort
500. When the answer ends, one line ``event="request"`` is logged (method, route,
path, status, duration_ms) and the request is counted by method, route *template*
(``/listings/{listing_id}``, never the raw path; ``unmatched`` for a 404 no route
took) and status, its duration observed (:mod:`exchange.metrics.instruments`).
"""

from __future__ import annotations

import secrets
import time

import structlog
from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.metrics.instruments import REQUEST_SECONDS, REQUESTS
from ledger.protocol.request_id import REQUEST_ID_HEADER, is_well_formed_request_id

__all__ = ["RequestObserver", "install_request_observer", "route_template"]

logger = structlog.stdlib.get_logger(__name__)

_HEADER = REQUEST_ID_HEADER.lower().encode("latin-1")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def new_request_id() -> str:
    return secrets.token_hex(16)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER:
            text = value.decode("latin-1")
            return text if is_well_formed_request_id(text) else None
    return None


def route_template(scope: Scope) -> str:
    """The template of the route that took the request (after routing), else
    :data:`UNMATCHED`: a label of bounded cardinality."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class RequestObserver:
    """Pure ASGI middleware; installed outermost, so it sees every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or new_request_id()
        started = time.perf_counter()
        status = 500  # what the client sees when the server drops the connection

        async def identified_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, identified_send)
            finally:
                seconds = time.perf_counter() - started
                method = scope["method"] if scope["method"] in _METHODS else "other"
                route = route_template(scope)
                REQUESTS.labels(method, route, str(status)).inc()
                REQUEST_SECONDS.labels(method, route).observe(seconds)
                logger.info(
                    "request",
                    method=method,
                    route=route,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                )


def install_request_observer(app: FastAPI) -> None:
    """Add :class:`RequestObserver`; install it last, so that it wraps every other
    middleware (the last-resort error guard's 500 carries the id too)."""
    app.add_middleware(RequestObserver)
