"""Authenticating requests: RFC 9421 HTTP Message Signatures, algorithm ``sm2-sm3``.

A request must carry exactly one signature that covers ``@method``,
``@target-uri`` and ``content-digest`` and has the parameters ``created``,
``nonce``, ``keyid`` (the participant's key id) and ``alg="sm2-sm3"``. The
checks, in order, each with its 401 code (``docs/api-auth.md``):

1. headers present and well formed, parameters and coverage as above → ``unauthenticated``
2. ``|now - created| <= skew`` → ``stale_signature``
3. ``keyid`` is an operator or a registered participant → ``unknown_key``
4. the SM2 signature over the signature base verifies → ``signature_invalid``
5. the body matches the signed ``Content-Digest`` (sm3 or sha-256) → ``digest_mismatch``
6. (key id, nonce) not seen before → ``replayed_nonce``; it is then stored in
   ``auth_nonce`` until ``created + skew`` (after which the request would be
   stale anyway) so the refusal holds across worker processes; expired
   nonces are pruned at most once a second per process.

The signature is verified before the nonce is stored, so nobody can burn
another participant's nonces.

:meth:`Authenticator.authenticate` stores the nonce at once, in a transaction
of its own. :meth:`Authenticator.authenticate_deferred` (write requests)
returns it as a :class:`NonceClaim` instead, whose :meth:`NonceClaim.store`
the caller runs in the transaction of the request's effect: a signed action's
batch item (:func:`exchange.log.batch.run_until_committed`), where a replay
refuses that item alone and leaves nothing, or else a transaction of its own
before the response is sent. Either way the unique key of ``auth_nonce``
decides, across processes.

A body too large to hold (a content upload) is authenticated by
:meth:`Authenticator.authenticate_head`: checks 1-4 and 6 on the headers
before the body is read (the signature covers ``content-digest``), then check
5 while the body streams (:class:`StreamedBody`); the endpoint keeps nothing
unless :meth:`StreamedBody.verify` passed at the end.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

import http_sf
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
)
from sqlalchemy import Connection, Engine, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from exchange.auth.algorithm import (
    ALGORITHM_ID,
    REQUIRED_COMPONENTS,
    SM2_SM3,
    BodyDigest,
    DigestFormatError,
    digest_matches,
    parse_content_digest,
)
from exchange.auth.errors import (
    AuthenticationError,
    BadSignatureError,
    DigestMismatchError,
    ReplayedNonceError,
    StaleSignatureError,
    UnknownKeyError,
)
from exchange.auth.models import auth_nonce_table
from exchange.participants.models import ParticipantStatus, Principal, Role, participant_table
from exchange.participants.operators import Operators
from ledger.records import KEY_ID_PATTERN
from ledger.sm2 import SM2PublicKey

__all__ = ["Authenticator", "NonceClaim", "RequestHead", "RequestParts", "StreamedBody"]

NONCE_PATTERN: Final = re.compile(r"[A-Za-z0-9_\-.~+/=]{16,128}")
"""A nonce: 16 to 128 token characters (the SDK sends 128 random bits, base64url)."""

_PRUNE_EVERY_S: Final = 1.0

MAX_SIGNATURE_HEADER_CHARS: Final = 1024
"""The longest ``Signature-Input``, ``Signature`` or ``Content-Digest`` taken (over
three times the longest the SDK sends: a 128-character nonce, both digests). Checked
before any parser reads them: parsing is linear but slow (~0.3 s for 100 kB)."""
_SIGNATURE_HEADERS: Final = ("Signature-Input", "Signature", "Content-Digest")


@dataclass(frozen=True, slots=True)
class RequestParts:
    """What authentication reads of a request."""

    method: str
    target_uri: str
    headers: Iterable[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What authentication reads of a request whose body is streamed (not yet read)."""

    method: str
    target_uri: str
    headers: Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _SignatureInput:
    key_id: str
    created: int
    nonce: str


# The statements of every signed request, built once: building a SQLAlchemy statement
# costs several times what executing a built one does, and the committer thread runs
# the nonce insert for every write request (bench/api.py, orders).
_STORE_NONCE: Final = {
    "postgresql": pg_insert(auth_nonce_table)
    .on_conflict_do_nothing(index_elements=["key_id", "nonce"])
    .returning(auth_nonce_table.c.key_id),
    "sqlite": sqlite_insert(auth_nonce_table)
    .on_conflict_do_nothing(index_elements=["key_id", "nonce"])
    .returning(auth_nonce_table.c.key_id),
}
_PRUNE_NONCES: Final = delete(auth_nonce_table).where(
    auth_nonce_table.c.expires_at < bindparam("before")
)
_PARTICIPANT: Final = select(
    participant_table.c.key_id,
    participant_table.c.role,
    participant_table.c.status,
    participant_table.c.display_name,
    participant_table.c.public_key,
).where(participant_table.c.key_id == bindparam("key_id"))


@dataclass(frozen=True, slots=True)
class NonceClaim:
    """A verified request's (key id, nonce), to be stored once."""

    key_id: str
    nonce: str
    expires_at: int
    """Ms since the epoch: ``created + skew`` (and a second)."""
    prune_before: int | None = None
    """Delete the nonces that expired before this (ms) on the way, if set."""

    def store(self, connection: Connection) -> None:
        """Insert the nonce on ``connection`` (in its transaction); raise
        :class:`ReplayedNonceError` (401) if it is there already."""
        if self.prune_before is not None:
            connection.execute(_PRUNE_NONCES, {"before": self.prune_before})
        stored = connection.execute(
            _STORE_NONCE[connection.dialect.name],
            {"key_id": self.key_id, "nonce": self.nonce, "expires_at": self.expires_at},
        ).first()
        if stored is None:
            raise ReplayedNonceError(
                "this nonce was already used by this key; sign each request afresh"
            )


@dataclass(frozen=True, slots=True)
class _VerifiedHead:
    principal: Principal
    signature_input: _SignatureInput
    digests: dict[str, bytes]
    now: float


class StreamedBody:
    """The body of a request authenticated by its headers, checked against its
    signed ``Content-Digest`` as it streams: feed every chunk, in order, to
    :meth:`update`, then call :meth:`verify` before keeping anything of it."""

    def __init__(self, digests: dict[str, bytes]) -> None:
        self._digest = BodyDigest(digests)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)

    def verify(self) -> None:
        """Raise :class:`DigestMismatchError` (401) unless the bytes fed match."""
        if not self._digest.matches():
            raise DigestMismatchError("the body does not match its signed Content-Digest")


class _Headers:
    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def items(self) -> list[tuple[str, str]]:
        return self._items


class _Resolver(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: SM2PublicKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_public_key(self, key_id: str) -> SM2PublicKey | None:
        return self._key if key_id == self._key_id else None

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError(key_id)


class Authenticator:
    """Checks request signatures against operators and the participant table."""

    def __init__(
        self,
        engine: Engine,
        operators: Operators,
        *,
        skew_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.operators = operators
        self.skew_s = skew_s
        self._clock = clock
        self._last_prune = 0.0
        self._prune_lock = threading.Lock()

    # -- the checks

    def authenticate(self, request: RequestParts) -> Principal:
        """Return who signed ``request``; raise an :class:`AuthenticationError` subclass."""
        principal, claim = self.authenticate_deferred(request)
        self._store(claim)
        return principal

    def authenticate_deferred(self, request: RequestParts) -> tuple[Principal, NonceClaim]:
        """:meth:`authenticate` but for storing the nonce: the caller must run the
        returned claim's :meth:`NonceClaim.store` before it answers (see the
        module docstring)."""
        head = self._verify_head(request.method, request.target_uri, request.headers)
        if not digest_matches(head.digests, request.body):
            raise DigestMismatchError("the body does not match its signed Content-Digest")
        return head.principal, self._claim(head)

    def authenticate_head(self, request: RequestHead) -> tuple[Principal, StreamedBody]:
        """Who signed ``request``, from its headers alone (checks 1-4 and 6 of the
        module docstring), and its body still to check (5) as it streams.

        Raises an :class:`AuthenticationError` subclass; the nonce is spent once
        the signature verified, so a replay is refused even while the first
        upload still streams."""
        head = self._verify_head(request.method, request.target_uri, request.headers)
        self._store(self._claim(head))
        return head.principal, StreamedBody(head.digests)

    def _verify_head(
        self, method: str, target_uri: str, header_items: Iterable[tuple[str, str]]
    ) -> _VerifiedHead:
        headers = _Headers(header_items)
        fields = {name.lower(): value for name, value in headers.items()}
        signature_input = self._parse(fields)
        now = self._clock()
        if abs(now - signature_input.created) > self.skew_s:
            raise StaleSignatureError(
                f"signature created at {signature_input.created}, server time {int(now)}: "
                f"more than {self.skew_s} s apart"
            )
        principal, key = self._lookup(signature_input.key_id)
        verifier = HTTPMessageVerifier(
            signature_algorithm=SM2_SM3, key_resolver=_Resolver(principal.key_id, key)
        )
        verifier.max_clock_skew = datetime.timedelta(seconds=self.skew_s)
        message = SimpleNamespace(method=method, url=target_uri, headers=headers)
        try:
            verifier.verify(
                message,
                max_age=datetime.timedelta(seconds=self.skew_s),
                require_components=REQUIRED_COMPONENTS,
            )
        except HTTPMessageSignaturesException as exc:
            raise BadSignatureError(f"the request signature does not verify: {exc}") from None
        try:
            digests = parse_content_digest(fields["content-digest"])
        except DigestFormatError as exc:
            raise AuthenticationError(str(exc)) from None
        return _VerifiedHead(principal, signature_input, digests, now)

    def _parse(self, fields: Mapping[str, str]) -> _SignatureInput:
        if "signature-input" not in fields or "signature" not in fields:
            raise AuthenticationError(
                "the request is not signed: send Signature-Input and Signature "
                "(RFC 9421, alg sm2-sm3; see docs/api-auth.md)"
            )
        if "content-digest" not in fields:
            raise AuthenticationError("the request has no Content-Digest")
        for name in _SIGNATURE_HEADERS:
            if len(fields[name.lower()]) > MAX_SIGNATURE_HEADER_CHARS:
                raise AuthenticationError(
                    f"{name} is longer than {MAX_SIGNATURE_HEADER_CHARS} characters"
                )
        try:
            inputs: Any = http_sf.parse(
                fields["signature-input"].encode("ascii"), tltype="dictionary"
            )
            signatures: Any = http_sf.parse(
                fields["signature"].encode("ascii"), tltype="dictionary"
            )
        except (ValueError, TypeError, UnicodeEncodeError):
            raise AuthenticationError("malformed Signature-Input or Signature") from None
        if len(inputs) != 1 or set(inputs) != set(signatures):
            raise AuthenticationError("send exactly one signature, with the same label in both")
        [(members, params)] = list(inputs.values())
        params = dict(params)
        if not isinstance(members, list):
            raise AuthenticationError("Signature-Input must be an inner list of components")
        covered = {m[0] for m in members if isinstance(m, tuple)}
        missing = [c for c in REQUIRED_COMPONENTS if c not in covered]
        if missing:
            raise AuthenticationError(f"the signature must cover {', '.join(missing)}")
        if params.get("alg") != ALGORITHM_ID:
            raise AuthenticationError(f'the signature must have alg="{ALGORITHM_ID}"')
        key_id = params.get("keyid")
        if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
            raise AuthenticationError("keyid must be a key id (64 lowercase hex digits)")
        created = params.get("created")
        if isinstance(created, bool) or not isinstance(created, int):
            raise AuthenticationError("the signature needs an integer created parameter")
        nonce = params.get("nonce")
        if not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce):
            raise AuthenticationError("the signature needs a nonce of 16 to 128 token characters")
        return _SignatureInput(key_id=key_id, created=created, nonce=nonce)

    def _lookup(self, key_id: str) -> tuple[Principal, SM2PublicKey]:
        operator = self.operators.get(key_id)
        if operator is not None:
            return self.operators.principal(key_id), operator
        with self.engine.connect() as connection:
            row = connection.execute(_PARTICIPANT, {"key_id": key_id}).first()
        if row is None:
            raise UnknownKeyError(f"no participant or operator has key id {key_id}")
        principal = Principal(
            key_id=row.key_id,
            role=Role(row.role),
            status=ParticipantStatus(row.status),
            display_name=row.display_name,
            public_key_pem=row.public_key,
        )
        return principal, SM2PublicKey.from_pem(row.public_key)

    def _claim(self, head: _VerifiedHead) -> NonceClaim:
        signature_input = head.signature_input
        return NonceClaim(
            key_id=signature_input.key_id,
            nonce=signature_input.nonce,
            expires_at=(signature_input.created + self.skew_s + 1) * 1000,
            prune_before=int(head.now * 1000) if self._should_prune(head.now) else None,
        )

    def _store(self, claim: NonceClaim) -> None:
        with self.engine.begin() as connection:
            claim.store(connection)

    def _should_prune(self, now: float) -> bool:
        with self._prune_lock:
            if now - self._last_prune < _PRUNE_EVERY_S:
                return False
            self._last_prune = now
            return True
