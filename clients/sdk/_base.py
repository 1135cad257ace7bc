"""The half of the SDK that does no I/O, shared by the sync and async clients.

In the manner of encode/httpx's ``_client.py``: :class:`BaseClient` holds the
configuration, turns each API operation into a :class:`Call` (method, path,
query, JSON body, whether it must be signed, which statuses are success, and
how to parse the answer), decides whether a failed attempt may be retried,
decodes responses into typed models or :class:`~clients.sdk.errors.APIError`,
and checks the log's signed answers. :class:`clients.sdk.ExchangeClient` and
:class:`clients.sdk.AsyncExchangeClient` only send calls and sleep, each in
its own way, so an endpoint is one ``_x_call`` builder here plus a
two-line method in each client.

Retries: idempotent calls (GET/HEAD) are retried on a connection that could
not be made or a 502/503/504 answer, with bounded exponential backoff
(``Retry-After`` honoured up to the cap). A POST is never retried (it may have
moved state even when its answer was lost) unless it carries an
``Idempotency-Key`` (the money-moving calls: deposit, place_order, accept,
resolve_dispute, revoke): then it is retried with the SAME key and the same
signed record on any transport error too, and the exchange answers a repeat
with the stored response instead of acting twice.

The marketplace's builders live in :mod:`clients.sdk._marketplace` (a subclass
of :class:`BaseClient`, to keep modules small); downloads and uploads in
:mod:`clients.sdk._transfer`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Self, TypeVar

import httpx

from clients.sdk.errors import (
    APIError,
    ClientConfigError,
    MissingKeyError,
    ReceiptPendingError,
    ResponseFormatError,
    ResponseVerificationError,
    TransportError,
    api_error,
)
from clients.sdk.models import (
    Anchor,
    Appended,
    ConsistencyProof,
    Entry,
    Health,
    InclusionProof,
    LogKey,
)
from clients.signing import SM2RequestSigner
from ledger.bundle import Bundle
from ledger.checkpoint import Checkpoint, KeyMismatchError
from ledger.errors import InvalidSignature, KeyFormatError
from ledger.protocol.errors import ErrorBody
from ledger.protocol.request_id import REQUEST_ID_HEADER
from ledger.records import ActorMismatchError, RecordFormatError, SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

if TYPE_CHECKING:
    from clients.sdk._transfer import UploadBody

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ENV_KEY_FILE",
    "ENV_KEY_PASSWORD_FILE",
    "ENV_URL",
    "NO_RETRIES",
    "BaseClient",
    "Call",
    "RetryPolicy",
]

T = TypeVar("T")

ENV_URL: Final = "SHANCHENG_EXCHANGE_URL"
ENV_KEY_FILE: Final = "SHANCHENG_KEY_FILE"
ENV_KEY_PASSWORD_FILE: Final = "SHANCHENG_KEY_PASSWORD_FILE"  # noqa: S105 (a variable name)
DEFAULT_URL: Final = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT: Final = 30.0
USER_AGENT: Final = "shancheng-sdk/0.1"
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How idempotent calls are retried: at most ``max_retries`` more attempts, after
    ``backoff * 2**attempt`` seconds (at most ``max_backoff``; a ``Retry-After`` in
    seconds replaces the computed delay, within the same cap)."""

    max_retries: int = 2
    backoff: float = 0.2
    max_backoff: float = 2.0
    statuses: frozenset[int] = frozenset({502, 503, 504})
    errors: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
    """Transport errors that mean the request never reached the server."""

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retry counts and delays are non-negative")

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = -1.0  # an HTTP date: use the computed delay
            if seconds >= 0:
                return min(seconds, self.max_backoff)
        return float(min(self.backoff * 2**attempt, self.max_backoff))


NO_RETRIES: Final = RetryPolicy(max_retries=0)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API operation, ready to send: what to ask and how to read the answer.

    ``parse`` gets the response only when its status is in ``ok``; any other
    status becomes an :class:`APIError`. ``signed`` calls carry the client's
    RFC 9421 request signature; the others go unsigned (public endpoints).
    ``content`` is a streamed request body (an upload). ``verify``, when set,
    checks the parsed answer against the log key (fetched, or pinned, before
    the request is sent) and returns it; it raises
    :class:`ResponseVerificationError`.
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    ok: tuple[int, ...] = (200,)
    signed: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    content: UploadBody | None = None
    verify: Callable[[T, SM2PublicKey], T] | None = None

    @property
    def idempotent(self) -> bool:
        return self.method in _IDEMPOTENT

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get(IDEMPOTENCY_HEADER)

    @property
    def retryable(self) -> bool:
        """GETs, and POSTs whose repeat the exchange recognises by their Idempotency-Key."""
        return self.idempotent or (self.idempotency_key is not None and self.content is None)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ResponseFormatError(
            f"{response.request.method} {response.request.url.path}: HTTP "
            f"{response.status_code} with a body that is not JSON"
        ) from None


def error_from_response(response: httpx.Response) -> APIError:
    """The :class:`APIError` an error response stands for (``http_error`` when the
    body is not the exchange's ``{"code", "message"}``, e.g. from a proxy)."""
    try:
        body = ErrorBody.from_dict(response.json())
    except (ValueError, RecordFormatError):
        body = None
    request_id = response.headers.get(REQUEST_ID_HEADER)
    if body is not None:
        error = api_error(response.status_code, body.code, body.message, request_id)
        if isinstance(error, ReceiptPendingError):
            error.retry_after = _retry_after(response)
        return error
    text = response.text.strip()[:200] if response.content else ""
    return api_error(response.status_code, "http_error", text or response.reason_phrase, request_id)


def _retry_after(response: httpx.Response) -> int | None:
    """Whole seconds from ``Retry-After`` (or the body's ``retry_after``), if sensible."""
    value: object = response.headers.get("retry-after")
    if value is None:
        try:
            value = response.json().get("retry_after")
        except (ValueError, AttributeError):
            return None
    try:
        seconds = int(str(value))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86_400 else None


def _parsed(parser: Callable[[Any], T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        return parser(_json(response))

    return parse


def _health(response: httpx.Response) -> Health:
    # 503 carries a Health body when the database or chain is down; anything
    # else served with 503 (a proxy, the server stopping) is an APIError.
    try:
        return Health.from_dict(_json(response))
    except (RecordFormatError, ResponseFormatError):
        if response.status_code != 200:
            raise error_from_response(response) from None
        raise


def _list_of(parser: Callable[..., T]) -> Callable[[Any], list[T]]:
    def parse(data: Any) -> list[T]:
        if not isinstance(data, list):
            raise RecordFormatError("expected a JSON list")
        return [parser(item, path=f"[{i}]") for i, item in enumerate(data)]

    return parse


def _appended_list(data: Any) -> list[Appended]:
    if not isinstance(data, dict):
        raise RecordFormatError("expected a JSON object")
    return _list_of(Appended.from_dict)(data.get("appended"))


def _bundle(response: httpx.Response) -> Bundle:
    return Bundle.from_json(response.content)


def _read_secret(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClientConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    return data


def key_from_files(key_file: str | Path, password_file: str | Path | None = None) -> SM2PrivateKey:
    """Load an SM2 private key PEM (encrypted with the password in ``password_file``,
    one trailing newline dropped). Raises :class:`ClientConfigError` naming the file."""
    password = None
    if password_file is not None:
        raw = _read_secret(Path(password_file), "key password file")
        password = raw[:-1] if raw.endswith(b"\n") else raw
        if not password:
            raise ClientConfigError(f"the key password file {password_file} is empty")
    pem = _read_secret(Path(key_file), "key file")
    try:
        return SM2PrivateKey.from_pem(pem, password)
    except KeyFormatError as exc:
        raise ClientConfigError(f"{key_file} is not a usable SM2 private key: {exc}") from None


class BaseClient:
    """Configuration, call builders, retry decisions, decoding and checks (no I/O)."""

    _asynchronous: ClassVar[bool] = False
    """Whether this client sends with httpx.AsyncClient (streamed bodies differ)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: SM2PrivateKey | None = None,
        auth: httpx.Auth | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        trusted_log_key: SM2PublicKey | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"the exchange URL must be http(s)://host[:port][/path], not {base_url!r}"
            )
        self.base_url = str(url).rstrip("/")
        self._key = key
        self._auth = auth if auth is not None else (SM2RequestSigner(key) if key else None)
        self.timeout = timeout
        self.retries = retries if retries is not None else RetryPolicy()
        self.trusted_log_key = trusted_log_key
        self._log_key: SM2PublicKey | None = trusted_log_key
        self.last_request_id: str | None = None
        """The ``X-Request-Id`` of the last answer decoded (``None`` before the first,
        or when it carried none): what the exchange's logs call that request."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """A client configured by ``SHANCHENG_EXCHANGE_URL`` (default
        ``http://127.0.0.1:8000``), ``SHANCHENG_KEY_FILE`` (optional: without it
        the client only reads) and ``SHANCHENG_KEY_PASSWORD_FILE`` (for an
        encrypted key). ``environ`` defaults to ``os.environ``; ``overrides``
        are constructor arguments (``transport=``, ``timeout=``, …). The only
        place the SDK reads the environment."""
        env = os.environ if environ is None else environ
        config: dict[str, Any] = {"base_url": env.get(ENV_URL) or DEFAULT_URL}
        key_file = env.get(ENV_KEY_FILE)
        password_file = env.get(ENV_KEY_PASSWORD_FILE) or None
        if key_file:
            config["key"] = key_from_files(key_file, password_file)
        elif password_file:
            raise ClientConfigError(f"{ENV_KEY_PASSWORD_FILE} is set but {ENV_KEY_FILE} is not")
        config.update(overrides)
        return cls(**config)

    # ------------------------------------------------------------------ identity

    @property
    def key(self) -> SM2PrivateKey | None:
        """The participant's SM2 key (signs records and requests), or ``None``."""
        return self._key

    @property
    def key_id(self) -> str | None:
        return None if self._key is None else self._key.key_id()

    def _require_key(self, what: str) -> SM2PrivateKey:
        if self._key is None:
            raise MissingKeyError(f"{what} needs the client's SM2 key (key=...)")
        return self._key

    def sign(
        self, type: str, payload: Mapping[str, Any], *, timestamp: int | None = None
    ) -> SignedRecord:
        """A record of action ``type`` with ``payload``, signed by the client's key
        (``timestamp`` in ms, default now). Raises :class:`MissingKeyError`, or
        :class:`ledger.records.RecordFormatError` for a bad type or payload
        (floats are refused: money is integer fen)."""
        return sign_record(
            self._require_key("signing a record"), type, payload, timestamp=timestamp
        )

    # ------------------------------------------------------------------ call builders

    def _health_call(self) -> Call[Health]:
        return Call("GET", "/health", _health, ok=(200, 503))

    def _log_key_call(self) -> Call[LogKey]:
        return Call("GET", "/.well-known/shancheng/log-key", _parsed(LogKey.from_dict))

    def _submission(self, signed: SignedRecord, public_key: SM2PublicKey | None) -> dict[str, Any]:
        if not isinstance(signed, SignedRecord):
            raise TypeError(f"expected a SignedRecord, not {type(signed).__name__}")
        if public_key is None:
            public_key = self._require_key("appending without public_key=").public_key()
        if public_key.key_id() != signed.record.actor:
            raise ValueError(
                f"the record's actor is {signed.record.actor}, the public key's id is "
                f"{public_key.key_id()}: pass the actor's public key"
            )
        return {"record": signed.to_dict(), "public_key": public_key.to_pem().decode("ascii")}

    def _append_call(self, signed: SignedRecord, public_key: SM2PublicKey | None) -> Call[Appended]:
        body = self._submission(signed, public_key)
        return Call(
            "POST", "/log/records", _parsed(Appended.from_dict), json=body, ok=(201,), signed=True
        )

    def _append_many_call(
        self, records: Sequence[SignedRecord], public_key: SM2PublicKey | None
    ) -> Call[list[Appended]]:
        if not records:
            raise ValueError("append_many needs at least one record")
        body = {"records": [self._submission(r, public_key) for r in records]}
        return Call(
            "POST", "/log/records:batch", _parsed(_appended_list), json=body, ok=(201,), signed=True
        )

    def _checkpoint_call(self, tree_size: int | None) -> Call[Checkpoint]:
        path = "/log/checkpoint" if tree_size is None else f"/log/checkpoints/{int(tree_size)}"
        return Call("GET", path, _parsed(Checkpoint.from_dict))

    def _entry_call(self, index: int) -> Call[Entry]:
        return Call("GET", f"/log/entries/{int(index)}", _parsed(Entry.from_dict))

    def _inclusion_call(
        self, index: int | None, leaf_hash: bytes | None, tree_size: int | None
    ) -> Call[InclusionProof]:
        if (index is None) == (leaf_hash is None):
            raise ValueError("give exactly one of index and leaf_hash")
        params: dict[str, str | int] = {}
        if index is not None:
            params["index"] = int(index)
        if leaf_hash is not None:
            params["leaf_hash"] = leaf_hash.hex()
        if tree_size is not None:
            params["tree_size"] = int(tree_size)
        return Call(
            "GET", "/log/proofs/inclusion", _parsed(InclusionProof.from_dict), params=params
        )

    def _consistency_call(self, first: int, second: int) -> Call[ConsistencyProof]:
        return Call(
            "GET",
            "/log/proofs/consistency",
            _parsed(ConsistencyProof.from_dict),
            params={"first": int(first), "second": int(second)},
        )

    def _anchors_call(self, start: int, limit: int) -> Call[list[Anchor]]:
        return Call(
            "GET",
            "/log/anchors",
            _parsed(_list_of(Anchor.from_dict)),
            params={"start": int(start), "limit": int(limit)},
        )

    def _receipt_call(self, index: int) -> Call[Bundle]:
        return Call("GET", f"/receipts/{int(index)}", _bundle)

    # ------------------------------------------------------------------ sending support

    def _request_args(self, call: Call[Any]) -> dict[str, Any]:
        args: dict[str, Any] = {"method": call.method, "url": call.path}
        if call.params:
            args["params"] = dict(call.params)
        if call.json is not None:
            args["json"] = call.json
        if call.headers:
            args["headers"] = dict(call.headers)
        if call.content is not None:
            stream = call.content.asynchronous() if self._asynchronous else call.content.sync()
            args["content"] = stream
        return args

    def _auth_for(self, call: Call[Any]) -> httpx.Auth | None:
        if not call.signed:
            return None
        if self._auth is None:
            raise MissingKeyError(
                f"{call.method} {call.path} is authenticated: make the client with key=..."
            )
        return self._auth

    def _retry_delay(
        self,
        call: Call[Any],
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: httpx.TransportError | None = None,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None``: do not retry."""
        policy = self.retries
        if not call.retryable or attempt >= policy.max_retries:
            return None
        if error is not None:
            # A keyed POST is safe to repeat even if the first one got through.
            safe = call.idempotency_key is not None or isinstance(error, policy.errors)
            return policy.delay(attempt) if safe else None
        assert response is not None
        if response.status_code in call.ok or response.status_code not in policy.statuses:
            return None
        return policy.delay(attempt, response.headers.get("retry-after"))

    def _transport_error(self, call: Call[Any], error: httpx.TransportError) -> TransportError:
        what = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
        detail = str(error) or type(error).__name__
        return TransportError(f"{call.method} {self.base_url}{call.path} {what}: {detail}", error)

    def _decode(self, call: Call[T], response: httpx.Response) -> T:
        self.last_request_id = response.headers.get(REQUEST_ID_HEADER)
        if response.status_code not in call.ok:
            raise error_from_response(response)
        try:
            return call.parse(response)
        except (RecordFormatError, KeyFormatError) as exc:
            raise ResponseFormatError(
                f"{call.method} {call.path}: the exchange's answer is malformed: {exc}"
            ) from None

    def _checked(self, call: Call[T], result: T, log_key: SM2PublicKey | None) -> T:
        """``result`` after ``call.verify`` (if any) against ``log_key``."""
        if call.verify is None:
            return result
        assert log_key is not None, "the client fetches the log key before a verified call"
        return call.verify(result, log_key)

    # ------------------------------------------------------------------ checks

    def _remember_log_key(self, published: LogKey) -> SM2PublicKey:
        """The key to verify the log's statements with: the pinned ``trusted_log_key``,
        else the first key the exchange published (trust on first use)."""
        if self._log_key is None:
            self._log_key = published.sm2_public_key
        return self._log_key

    def _check_appended(
        self, signed: SignedRecord, appended: Appended, log_key: SM2PublicKey, what: str
    ) -> Appended:
        leaf = signed.leaf_hash()
        promise = appended.signed_promise
        if appended.leaf_hash_bytes != leaf or promise.leaf_hash != leaf:
            raise ResponseVerificationError(
                f"{what}: the exchange promised leaf {promise.leaf_hash.hex()}, the record's "
                f"leaf hash is {leaf.hex()}"
            )
        if promise.index != appended.index:
            raise ResponseVerificationError(
                f"{what}: the promise is for index {promise.index}, the answer says "
                f"{appended.index}"
            )
        _verify_statement(promise, log_key, f"{what}: the promise")
        return appended

    def _check_batch(
        self,
        records: Sequence[SignedRecord],
        appended: list[Appended],
        log_key: SM2PublicKey,
    ) -> list[Appended]:
        if len(appended) != len(records):
            raise ResponseVerificationError(
                f"sent {len(records)} records, the exchange answered for {len(appended)}"
            )
        for position, (signed, item) in enumerate(zip(records, appended, strict=True)):
            if item.index != appended[0].index + position:
                raise ResponseVerificationError(
                    f"records[{position}]: index {item.index} breaks the batch's consecutive run"
                )
            self._check_appended(signed, item, log_key, f"records[{position}]")
        return appended

    def _check_checkpoint(
        self, checkpoint: Checkpoint, log_key: SM2PublicKey, tree_size: int | None
    ) -> Checkpoint:
        if tree_size is not None and checkpoint.tree_size != tree_size:
            raise ResponseVerificationError(
                f"asked for the checkpoint of tree size {tree_size}, got {checkpoint.tree_size}"
            )
        _verify_statement(checkpoint, log_key, f"the checkpoint of size {checkpoint.tree_size}")
        return checkpoint

    def _check_entry(self, entry: Entry, index: int, log_key: SM2PublicKey) -> Entry:
        what = f"entry {index}"
        if entry.index != index:
            raise ResponseVerificationError(f"asked for {what}, got entry {entry.index}")
        record = entry.signed_record
        try:
            record.verify(entry.actor_key)
        except (ActorMismatchError, InvalidSignature) as exc:
            raise ResponseVerificationError(
                f"{what}: the actor's signature does not verify ({exc})"
            ) from None
        appended = Appended(entry.index, entry.leaf_hash, entry.promise)
        self._check_appended(record, appended, log_key, what)
        return entry

    def _check_bundle(self, bundle: Bundle, index: int) -> Bundle:
        # The bundle itself is verified by verify_receipt (against the chain);
        # here only that it answers the question.
        if bundle.promise.index != index or bundle.inclusion.index != index:
            raise ResponseVerificationError(
                f"asked for the receipt of entry {index}, got one for entry {bundle.promise.index}"
            )
        return bundle


def _verify_statement(statement: Any, log_key: SM2PublicKey, what: str) -> None:
    try:
        statement.verify(log_key)
    except KeyMismatchError as exc:
        raise ResponseVerificationError(
            f"{what} is signed by log key {exc.expected}, not the trusted {exc.actual}"
        ) from None
    except InvalidSignature as exc:
        raise ResponseVerificationError(f"{what} does not verify: {exc}") from None
