"""Strict JSON request bodies: a pure ASGI middleware answering 400 ``invalid_json``.

FastAPI decodes a JSON body with the C decoder, which recurses once per level of
nesting: with the recursion limit py_ecc sets (100,000, when web3 is imported) a
body of 100,000 ``[`` overflows the C stack and kills the process. And it keeps
the last of duplicate keys (``{"amount": 999999, "amount": 3}`` is 3) and takes
``NaN`` / ``Infinity``. So every JSON body is read here first, whole (it is
already bounded by the body size limit, :mod:`exchange.limits`, which must wrap
this middleware), and refused before any parser sees it when it is nested deeper
than :data:`ledger.records.MAX_TEXT_DEPTH` levels (checked without recursion, in
linear time), repeats a key in an object, or holds ``NaN``/``Infinity`` (the
same strict parser as the ledger's bundles, :func:`ledger.records.parse_json_text`),
or a NUL character in a string (which no PostgreSQL text column can hold).

Text that is not JSON at all is left to FastAPI, whose answer (422
``invalid_request``) does not change. Bodies that are not JSON, and routes that
stream their body (opted out of the size limit with ``body_limit(None)``, e.g.
content uploads), pass untouched.
"""

from __future__ import annotations

import email.message
import json
import re
from typing import Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import send_error
from exchange.limits import streams_body
from ledger.records import RecordFormatError, parse_json_text

__all__ = ["CODE", "StrictJsonBody", "install_strict_json_body"]

CODE: Final = "invalid_json"
_NUL_ESCAPE: Final = re.compile(r"(?<!\\)(?:\\\\)*+\\u0000")
"""``\\u0000`` as an escape (not the text after an escaped backslash): PostgreSQL can
store no NUL in text, so a string holding one would fail as a 500 there."""


class StrictJsonBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not _json_body_expected(scope)
            or streams_body(scope)  # never held whole
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = refusal(body)
        if problem is not None:
            await _refuse(send, problem)
            return
        await self.app(scope, _replay(body, receive), send)


def refusal(body: bytes) -> str | None:
    """Why ``body`` must not reach a JSON parser, or ``None`` if it may."""
    if not body:
        return None
    try:
        # Decoded as json.loads(bytes) decodes (UTF-8, -16 or -32 by its first bytes).
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError:
        return None  # no parser gets past decoding it: FastAPI answers 422
    try:
        parse_json_text(text, "the request body")
    except RecordFormatError as exc:
        message = str(exc)
        return message if message.startswith("the request body") else f"the request body: {message}"
    except ValueError:
        return None  # not JSON: FastAPI reports where, as it always did
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        return "the request body holds U+0000 (NUL) in a string; no text may contain it"
    return None


def _json_body_expected(scope: Scope) -> bool:
    """The request has a body FastAPI would decode as JSON: ``application/json`` or
    ``*/*+json``, or no content type (a route reading its body itself may parse it)."""
    content_type: bytes | None = None
    has_body = False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            has_body = value.strip() != b"0"
        elif name == b"transfer-encoding":
            has_body = True
    if not has_body:
        return False
    if content_type is None:
        return True
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body, then the server's messages
    (a disconnect, for instance)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


async def _refuse(send: Send, message: str) -> None:
    await send_error(send, 400, CODE, message)


def install_strict_json_body(app: FastAPI) -> None:
    """Add the middleware; install it BEFORE the body size limit, which must wrap it."""
    app.add_middleware(StrictJsonBody)
