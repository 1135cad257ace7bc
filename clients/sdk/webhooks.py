"""Checking a webhook delivery on the receiving side: :func:`verify_webhook`.

The exchange POSTs each event as JSON with ``Shancheng-Event-Id`` and an RFC 9421
signature by its log key (``sm2-sm3``) over ``@method``, ``@target-uri``,
``content-digest`` and ``shancheng-event-id`` (docs/events.md). Delivery is at
least once: keep the ids you have handled and ignore a repeat (answer it 2xx).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any, Final

import http_sf
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
)

from clients.sdk.errors import ClientError
from clients.sdk.event_models import Event
from ledger.errors import VerificationError
from ledger.http_signatures import (
    ALGORITHM_ID,
    SM2_SM3,
    DigestFormatError,
    digest_matches,
    parse_content_digest,
)
from ledger.records import RecordFormatError
from ledger.sm2 import SM2PublicKey

__all__ = ["EVENT_ID_HEADER", "WEBHOOK_COMPONENTS", "WebhookVerificationError", "verify_webhook"]

EVENT_ID_HEADER: Final = "Shancheng-Event-Id"
WEBHOOK_COMPONENTS: Final = ("@method", "@target-uri", "content-digest", "shancheng-event-id")


class WebhookVerificationError(ClientError, VerificationError):
    """A delivery that is not the exchange's (bad or missing signature, another key,
    a stale signature, a body that is not the signed one)."""


class _Headers:
    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def items(self) -> list[tuple[str, str]]:
        return self._items


class _LogKey(HTTPSignatureKeyResolver):
    def __init__(self, key: SM2PublicKey) -> None:
        self._key = key

    def resolve_public_key(self, key_id: str) -> SM2PublicKey | None:
        return self._key if key_id == self._key.key_id() else None

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError(key_id)


def _items(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def verify_webhook(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    log_key: SM2PublicKey,
    *,
    max_age_s: float = 300.0,
    now: float | None = None,
) -> Event:
    """The event a delivery carries, once it is shown to come from the exchange:
    a single ``sm2-sm3`` signature by ``log_key`` (the key published at
    ``/.well-known/shancheng/log-key``; pin it) covering the method, ``url`` (the URL
    you registered, as the exchange addressed it), the Content-Digest and the event
    id, created at most ``max_age_s`` ago; the body matches the digest; the event id
    header is the body's. Raises :class:`WebhookVerificationError`."""
    items = _items(headers)
    fields = {name.lower(): value for name, value in items}
    for name in ("signature-input", "signature", "content-digest", "shancheng-event-id"):
        if name not in fields:
            raise WebhookVerificationError(f"the delivery has no {name} header")
    _check_parameters(fields["signature-input"], log_key.key_id())
    verifier = HTTPMessageVerifier(signature_algorithm=SM2_SM3, key_resolver=_LogKey(log_key))
    max_age = datetime.timedelta(seconds=max_age_s)
    verifier.max_clock_skew = max_age
    message = SimpleNamespace(method=method.upper(), url=url, headers=_Headers(items))
    try:
        [result] = verifier.verify(message, max_age=max_age, require_components=WEBHOOK_COMPONENTS)
    except HTTPMessageSignaturesException as exc:
        raise WebhookVerificationError(f"the delivery's signature does not verify: {exc}") from None
    except ValueError as exc:  # more than one signature
        raise WebhookVerificationError(f"the delivery must carry one signature: {exc}") from None
    created = int(result.parameters["created"])
    current = time.time() if now is None else now
    if abs(current - created) > max_age_s:
        raise WebhookVerificationError(
            f"the delivery was signed at {created}, {int(current - created)} s ago"
        )
    try:
        digests = parse_content_digest(fields["content-digest"])
    except DigestFormatError as exc:
        raise WebhookVerificationError(str(exc)) from None
    if not digest_matches(digests, body):
        raise WebhookVerificationError("the body does not match its signed Content-Digest")
    try:
        event = Event.from_dict(json.loads(body))
    except (ValueError, RecordFormatError) as exc:
        raise WebhookVerificationError(f"the body is not an event: {exc}") from None
    if event.id != fields["shancheng-event-id"]:
        raise WebhookVerificationError(
            f"the header names event {fields['shancheng-event-id']!r}, the body {event.id!r}"
        )
    return event


def _check_parameters(signature_input: str, key_id: str) -> None:
    try:
        inputs: Any = http_sf.parse(signature_input.encode("ascii"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise WebhookVerificationError("malformed Signature-Input") from None
    if len(inputs) != 1:
        raise WebhookVerificationError("the delivery must carry exactly one signature")
    [(_, params)] = list(inputs.values())
    params = dict(params)
    if params.get("alg") != ALGORITHM_ID:
        raise WebhookVerificationError(f'the signature must have alg="{ALGORITHM_ID}"')
    if params.get("keyid") != key_id:
        raise WebhookVerificationError(
            f"the delivery is signed by key {params.get('keyid')!r}, not the log key {key_id}"
        )
    if not isinstance(params.get("created"), int) or isinstance(params.get("created"), bool):
        raise WebhookVerificationError("the signature needs an integer created parameter")
