"""Domain errors and the one handler that maps them to ``{"code", "message"}`` responses;
the last-resort guard that answers anything else as 500 ``internal``."""

from __future__ import annotations

import json
import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.protocol.errors import ErrorBody

logger = logging.getLogger(__name__)


class ExchangeError(Exception):
    """Base of the errors services raise; ``status`` and ``code`` decide the response."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, str]:
        """Fields the error body carries beside ``code`` and ``message`` (none by default)."""
        return {}


class NotFoundError(ExchangeError):
    status = 404
    code = "not_found"


class ForbiddenError(ExchangeError):
    """Authenticated, but not allowed to do this."""

    status = 403
    code = "forbidden"


class ConflictError(ExchangeError):
    status = 409
    code = "conflict"


_FASTAPI_BODY_ERROR = "There was an error parsing the body"
"""The detail of the 400 FastAPI raises when it cannot decode a request body."""


def error_body(code: str, message: str) -> dict[str, str]:
    return ErrorBody(code, message).to_dict()


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer ``{"code", "message"}`` straight on the ASGI ``send`` (for middleware,
    which runs outside the app's exception handlers)."""
    body = json.dumps(error_body(code, message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ExchangeError)
    async def _domain(_request: Request, exc: ExchangeError) -> JSONResponse:
        body = error_body(exc.code, exc.message) | exc.details()
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            # A body FastAPI could not decode (e.g. not UTF-8) is malformed JSON, like
            # the json_invalid case FastAPI already reports as a validation error.
            return JSONResponse(
                error_body("invalid_request", "body: not valid JSON"), status_code=422
            )
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )


INTERNAL_CODE = "internal"


class InternalErrorGuard:
    """Last resort: an exception nothing else handled is a fault of the server, never
    of the client (client mistakes are domain errors, 4xx). It is logged with its
    traceback and a reference, and answered 500 ``{"code": "internal", "message"}``
    naming only that reference, instead of a plain-text traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            reference = secrets.token_hex(8)
            logger.error(
                "internal error %s on %s %s",
                reference,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            if started:  # too late for an answer: the server drops the connection
                raise
            await send_error(
                send,
                500,
                INTERNAL_CODE,
                f"internal error (reference {reference}); the exchange has logged it",
            )


def install_internal_error_guard(app: FastAPI) -> None:
    """Add :class:`InternalErrorGuard`; install it after every other middleware, so
    that it wraps them all."""
    app.add_middleware(InternalErrorGuard)
