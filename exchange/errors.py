"""Domain errors and the one handler that maps them to ``{"code", "message"}`` responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ExchangeError(Exception):
    """Base of the errors services raise; ``status`` and ``code`` decide the response."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ExchangeError):
    status = 404
    code = "not_found"


class ConflictError(ExchangeError):
    status = 409
    code = "conflict"


_FASTAPI_BODY_ERROR = "There was an error parsing the body"
"""The detail of the 400 FastAPI raises when it cannot decode a request body."""


def error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ExchangeError)
    async def _domain(_request: Request, exc: ExchangeError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

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
