"""Request body size limit: a pure ASGI middleware answering 413 ``payload_too_large``.

A request whose ``Content-Length`` exceeds the limit is refused before any of its
body is read; a body streamed without a length (chunked) is counted as the app
reads it, and the read that crosses the limit raises :class:`PayloadTooLarge`
(an HTTP 413 the app's error handler turns into ``{"code", "message"}``), so the
body is never held whole in memory.

Routes that take large bodies (content uploads) opt out, or set their own limit,
with :func:`body_limit`; the route is only looked up when a request would be
refused, so ordinary requests pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import send_error

__all__ = [
    "BodySizeLimit",
    "PayloadTooLarge",
    "body_limit",
    "install_body_limit",
    "route_body_limit",
    "streams_body",
]

CODE = "payload_too_large"
_ATTRIBUTE = "__shancheng_body_limit__"
_UNSET = object()

F = TypeVar("F", bound=Callable[..., Any])


class PayloadTooLarge(HTTPException):
    """The request body exceeded its limit (raised from the wrapped ``receive``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")
        self.limit = limit


def body_limit(max_bytes: int | None) -> Callable[[F], F]:
    """Give an endpoint its own body limit; ``None``: no limit from this middleware
    (the endpoint enforces its own, e.g. ``content_max_bytes`` on uploads)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, max_bytes)
        return endpoint

    return mark


def _message(limit: int) -> str:
    return f"the request body exceeds {limit} bytes"


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.app = app
        self.max_bytes = max_bytes

    def _route_limit(self, scope: Scope) -> int | None:
        """The limit of the route ``scope`` reaches (the default if it set none)."""
        return route_body_limit(scope, self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        limit: int | None = self.max_bytes
        resolved = False
        if declared is not None and declared > self.max_bytes:
            limit, resolved = self._route_limit(scope), True
            if limit is not None and declared > limit:
                await _refuse(send, limit)
                return
        if limit is None:
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received, limit, resolved
            message = await receive()
            if message["type"] == "http.request" and limit is not None:
                received += len(message.get("body", b""))
                if received > limit and not resolved:
                    limit, resolved = self._route_limit(scope), True
                if limit is not None and received > limit:
                    raise PayloadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:  # raised where no handler turned it into a response
            if started:
                raise
            await _refuse(send, exc.limit)


def route_body_limit(scope: Scope, default: int) -> int | None:
    """The body limit of the route ``scope`` reaches: its own (:func:`body_limit`),
    or ``default`` if it set none (or no route matches)."""
    application = scope.get("app")
    router = getattr(application, "router", None)
    for route in _flat_routes(getattr(router, "routes", ())):
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            endpoint = child_scope.get("endpoint") or getattr(route, "endpoint", None)
            value = getattr(endpoint, _ATTRIBUTE, _UNSET)
            return default if value is _UNSET else value  # type: ignore[return-value]
    return default


def streams_body(scope: Scope) -> bool:
    """Whether the route ``scope`` reaches opted out of the limit (``body_limit(None)``):
    it streams its body, which must never be held whole."""
    return route_body_limit(scope, 1) is None


def _flat_routes(routes: Any) -> Any:
    """The app's routes with included routers expanded into their routes: since
    newer FastAPI ``include_router`` keeps one nested entry per router (whose
    ``matches`` names no endpoint) instead of copying its routes into the app."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: the routes are already flat
        return routes
    return iter_route_contexts(routes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    await send_error(send, 413, CODE, _message(limit), extra_headers=((b"connection", b"close"),))


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    """Add the middleware and document 413 on every operation that takes a body."""
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.get("components", {}).get("schemas", {})
        error = {"$ref": "#/components/schemas/ErrorBody"} if "ErrorBody" in schemas else None
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict) or "requestBody" not in operation:
                    continue
                operation.setdefault("responses", {}).setdefault(
                    "413",
                    {
                        "description": f"{CODE}: the request body is too large",
                        "content": {
                            "application/json": {
                                "schema": error or _ERROR_SCHEMA,
                                "example": {"code": CODE, "message": _message(max_bytes)},
                            }
                        },
                    },
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
