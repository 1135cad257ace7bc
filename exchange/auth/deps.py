"""FastAPI dependencies: ``CurrentParticipant``, ``OptionalParticipant`` and role guards.

    @router.get("/participants/me")
    def me(principal: CurrentParticipant) -> ...

    @router.post("/listings", dependencies=[...])
    def create(principal: Annotated[Principal, Depends(require_role(Role.PROVIDER))]) -> ...

Tests may swap ``current_participant`` through ``app.dependency_overrides``.

An endpoint that streams a large body (a content upload) must not let the
body be read whole: it takes :data:`StreamingParticipant` instead, which
authenticates the headers at once and hands over the body check
(:class:`~exchange.auth.verifier.StreamedBody`) to run while it streams.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from exchange.auth.errors import AuthenticationError, RoleError, SuspendedError
from exchange.auth.verifier import Authenticator, RequestHead, RequestParts, StreamedBody
from exchange.participants.models import ParticipantStatus, Principal, Role

__all__ = [
    "CurrentParticipant",
    "OptionalParticipant",
    "SessionDep",
    "SignedStream",
    "StreamingParticipant",
    "check_role",
    "current_participant",
    "get_session",
    "optional_participant",
    "request_parts",
    "require_role",
    "streaming_participant",
    "target_uri",
]


def target_uri(request: Request) -> str:
    """The request's absolute URI as the client sent it (percent-encoding kept):
    ``public_origin`` from settings when set (behind a proxy), else the scheme
    and ``Host`` header the server saw."""
    scope = request.scope
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    path = raw.decode("latin-1").split("?", 1)[0]
    query = scope.get("query_string", b"").decode("latin-1")
    origin: str | None = request.app.state.settings.public_origin
    if origin is None:
        host = request.headers.get("host")
        if not host:
            raise AuthenticationError("the request has no Host header")
        origin = f"{scope.get('scheme', 'http')}://{host}"
    return f"{origin.rstrip('/')}{path}{'?' + query if query else ''}"


async def request_parts(request: Request) -> RequestParts:
    return RequestParts(
        method=request.method,
        target_uri=target_uri(request),
        headers=request.headers.items(),
        body=await request.body(),
    )


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


def _active(principal: Principal) -> Principal:
    if principal.status is ParticipantStatus.SUSPENDED:
        raise SuspendedError(f"participant {principal.key_id} is suspended")
    return principal


async def current_participant(request: Request) -> Principal:
    """The authenticated, not suspended participant (or operator); 401/403 otherwise."""
    parts = await request_parts(request)
    principal = await run_in_threadpool(_authenticator(request).authenticate, parts)
    return _active(principal)


async def optional_participant(request: Request) -> Principal | None:
    """Like :func:`current_participant`, but ``None`` for an unsigned request (a
    request that tries to sign and fails is still refused)."""
    if "signature" not in request.headers and "signature-input" not in request.headers:
        return None
    return await current_participant(request)


CurrentParticipant = Annotated[Principal, Depends(current_participant)]
OptionalParticipant = Annotated[Principal | None, Depends(optional_participant)]


@dataclass(frozen=True, slots=True)
class SignedStream:
    """A request authenticated by its signed headers; ``body`` must check its
    streamed bytes (``update`` each chunk, ``verify`` at the end) before the
    endpoint keeps any of them."""

    principal: Principal
    body: StreamedBody


async def streaming_participant(request: Request) -> SignedStream:
    """Like :func:`current_participant` for an endpoint that streams its body:
    the signature is checked over the headers now, the body is left unread."""
    head = RequestHead(
        method=request.method, target_uri=target_uri(request), headers=request.headers.items()
    )
    principal, body = await run_in_threadpool(_authenticator(request).authenticate_head, head)
    return SignedStream(_active(principal), body)


StreamingParticipant = Annotated[SignedStream, Depends(streaming_participant)]


def check_role(principal: Principal, *roles: Role) -> Principal:
    """``principal``, refused (403 ``role_forbidden``) unless its role is one of ``roles``."""
    if principal.role not in roles:
        names = " or ".join(sorted(r.value for r in roles))
        raise RoleError(f"this needs the {names} role; you are {principal.role.value}")
    return principal


def require_role(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the current participant, refused (403 ``role_forbidden``)
    unless its role is one of ``roles``."""

    async def guard(principal: CurrentParticipant) -> Principal:
        return check_role(principal, *roles)

    return guard


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
