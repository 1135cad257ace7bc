"""Idempotency keys for the POSTs that move money (deposits, orders).

A client sends ``Idempotency-Key: <1-200 visible ASCII characters>``. The key
is stored per participant, with a fingerprint of the request (SM3 of RFC 8785
``{"method", "path", "body"}``), in the SAME transaction as the effect (the row
is staged with the effect and committed with its log record). Then:

* same key, same request → the stored response again (status and body), with
  the header ``Idempotent-Replayed: true``; no second effect;
* same key, a different request (another body or endpoint) → 422
  ``idempotency_key_reused``;
* a malformed key → 422 ``invalid_idempotency_key``.

The response body is written to the row after the commit, in the running
appender's next batch (no second durable commit on the request's way); until
then, or if the process dies in between, a replay rebuilds the response from
the stored resource and its log entry (``rebuild``).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import JSON, BigInteger, Connection, Engine, bindparam, select, update
from sqlmodel import Field, Session, SQLModel, col

from exchange.errors import ExchangeError
from exchange.log.appender import ShuttingDownError, running_appender
from exchange.log.batch import StagedChange
from ledger.records import RecordFormatError, canonical_json
from ledger.sm3 import sm3

__all__ = [
    "HEADER",
    "IdempotencyKey",
    "IdempotencyKeyReusedError",
    "Idempotent",
    "InvalidIdempotencyKeyError",
    "run",
    "run_keyed",
]

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_KEY: Final = re.compile(r"[\x21-\x7e]{1,200}")


class InvalidIdempotencyKeyError(ExchangeError):
    status = 422
    code = "invalid_idempotency_key"


class IdempotencyKeyReusedError(ExchangeError):
    status = 422
    code = "idempotency_key_reused"


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_key"

    participant_key_id: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    fingerprint: str = Field(max_length=64)
    """Hex SM3 of the canonical request (method, path, body)."""
    resource_id: str = Field(max_length=64)
    leaf_hash: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: int = Field(sa_type=BigInteger)


def fingerprint(method: str, path: str, body: BaseModel) -> str:
    """SM3 of the request, for telling a retry from another request; never raises.

    The body is not validated yet (the endpoint checks the record after this),
    so it may hold what RFC 8785 refuses (floats, integers beyond ±(2^53−1),
    lone surrogates): such a body is encoded by ``json.dumps`` instead (sorted
    keys, ASCII escapes; after a domain prefix, so no valid body's encoding can
    equal it), and the endpoint then refuses it like any malformed record.
    """
    document = {"method": method, "path": path, "body": body.model_dump()}
    try:
        encoded = canonical_json(document)
    except RecordFormatError:
        encoded = _NOT_CANONICAL + json.dumps(
            document, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=repr
        ).encode("ascii")
    return sm3(encoded).hex()


_NOT_CANONICAL: Final = b"shancheng.idempotency.not-canonical\x00"


class Idempotent:
    """One request's idempotency context (``key`` is ``None`` without the header)."""

    def __init__(self, request: Request, participant_key_id: str, body: BaseModel) -> None:
        raw = request.headers.get(HEADER)
        if raw is not None and not _KEY.fullmatch(raw):
            raise InvalidIdempotencyKeyError(f"{HEADER} must be 1 to 200 visible ASCII characters")
        self.key = raw
        self.participant_key_id = participant_key_id
        self.fingerprint = fingerprint(request.method, request.url.path, body)

    def replay(
        self, session: Session, rebuild: Callable[[IdempotencyKey], BaseModel]
    ) -> JSONResponse | None:
        """The stored response for this key, ``None`` if the key is new; raises
        :class:`IdempotencyKeyReusedError` if it was used for another request."""
        if self.key is None:
            return None
        ident = {"participant": self.participant_key_id, "idempotency_key": self.key}
        if session.connection().execute(_KEY_USED, ident).first() is None:
            return None  # (the common case, without the cost of an ORM load)
        row = session.get(IdempotencyKey, (self.participant_key_id, self.key))
        if row is None:
            return None
        if row.fingerprint != self.fingerprint:
            raise IdempotencyKeyReusedError(
                f"{HEADER} {self.key!r} was used for a different request"
            )
        body = row.response
        if body is None:
            body = rebuild(row).model_dump(mode="json")
        return JSONResponse(body, status_code=row.status_code, headers={REPLAYED_HEADER: "true"})

    def stage(
        self, session: Session, *, resource_id: str, leaf_hash: bytes, status_code: int
    ) -> None:
        """Add the key's row to the effect's transaction (no-op without a key)."""
        if self.key is None:
            return
        session.add(
            IdempotencyKey(
                participant_key_id=self.participant_key_id,
                key=self.key,
                fingerprint=self.fingerprint,
                resource_id=resource_id,
                leaf_hash=leaf_hash.hex(),
                status_code=status_code,
                created_at=time.time_ns() // 1_000_000,
            )
        )

    def remember(self, session: Session, response: BaseModel) -> None:
        """Store the response of the committed effect: queued for the engine's
        running appender, or (without one) committed here."""
        if self.key is None:
            return
        values = {
            "participant": self.participant_key_id,
            "idempotency_key": self.key,
            "body": response.model_dump(mode="json"),
        }
        bind = session.get_bind()
        appender = running_appender(bind) if isinstance(bind, Engine) else None
        if appender is not None and appender.running:
            with contextlib.suppress(ShuttingDownError):  # (then stored here)
                appender.submit([], StagedChange(statements=[lambda c: _store(c, values)]))
                return
        session.execute(_STORE_RESPONSE, values)
        session.commit()


# Built once (every POST that moves money runs them; building a statement costs
# several times what executing a built one does). An UPDATE's bound names may not
# be column names (SQLAlchemy keeps those for its SET clause).
_KEY_USED: Final = select(col(IdempotencyKey.key)).where(
    col(IdempotencyKey.participant_key_id) == bindparam("participant"),
    col(IdempotencyKey.key) == bindparam("idempotency_key"),
)
_STORE_RESPONSE: Final = (
    update(IdempotencyKey)
    .where(
        col(IdempotencyKey.participant_key_id) == bindparam("participant"),
        col(IdempotencyKey.key) == bindparam("idempotency_key"),
    )
    .values(response=bindparam("body", type_=JSON))
)


def _store(connection: Connection, values: dict[str, Any]) -> None:
    connection.execute(_STORE_RESPONSE, values)


_Response = TypeVar("_Response", bound=BaseModel)


def run(
    session: Session,
    idempotent: Idempotent,
    rebuild: Callable[[IdempotencyKey], _Response],
    effect: Callable[[], _Response],
) -> _Response | JSONResponse:
    """Replay a stored response, or run ``effect`` (which stages the key with
    :meth:`Idempotent.stage`) and remember its response. A request that lost a
    race with the same key (refused with a conflict) gets the winner's response."""
    replayed = idempotent.replay(session, rebuild)
    if replayed is not None:
        return replayed
    try:
        result = effect()
    except ExchangeError:
        session.rollback()
        if idempotent.key is not None:
            replayed = idempotent.replay(session, rebuild)
            if replayed is not None:
                return replayed
        raise
    idempotent.remember(session, result)
    return result


def run_keyed(
    session: Session,
    request: Request,
    key_id: str,
    body: BaseModel,
    rebuild: Callable[[Session, IdempotencyKey], _Response],
    effect: Callable[[Idempotent], _Response],
) -> _Response | JSONResponse:
    """:func:`run` for ``request`` (whose ``body`` ``key_id`` signed) under its
    Idempotency-Key, if it has one: ``effect`` gets the request's :class:`Idempotent`."""
    idempotent = Idempotent(request, key_id, body)
    return run(session, idempotent, lambda row: rebuild(session, row), lambda: effect(idempotent))
