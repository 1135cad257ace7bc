"""The event feed's and the webhooks' calls, built once for both clients (like
:mod:`clients.sdk._marketplace`), and what both need to follow the SSE stream."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import httpx

from clients.sdk._base import Call, _parsed
from clients.sdk._computations import ComputationCalls
from clients.sdk._sse import SSEMessage
from clients.sdk.errors import ResponseFormatError
from clients.sdk.event_models import Event, EventPage, Webhook, WebhookAttempt
from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError

__all__ = ["STREAM_READ_TIMEOUT", "EventCalls"]

STREAM_READ_TIMEOUT: Final = 60.0
"""Seconds without a byte (the exchange sends a keep-alive every 15 s) before a
stream is taken for dead and reopened."""


def _types(types: Iterable[str] | None) -> list[str] | None:
    if types is None:
        return None
    if isinstance(types, str):
        return [types]
    return [str(t) for t in types]


def _webhooks(data: Any) -> list[Webhook]:
    o = JSONObject(data, "")
    return list(o.items("items", lambda item, where: Webhook.from_dict(item, path=where)))


def _attempts(data: Any) -> list[WebhookAttempt]:
    o = JSONObject(data, "")
    return list(o.items("items", lambda item, where: WebhookAttempt.from_dict(item, path=where)))


class EventCalls(ComputationCalls):
    """Call builders of ``/events`` and ``/webhooks`` (no I/O)."""

    def _events_call(
        self, after: str | None, limit: int, types: Iterable[str] | None
    ) -> Call[EventPage]:
        params: dict[str, Any] = {"limit": int(limit)}
        if after is not None:
            params["after"] = str(after)
        if (names := _types(types)) is not None:
            params["type"] = names
        return Call("GET", "/events", _parsed(EventPage.from_dict), params=params, signed=True)

    def _stream_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        last_id: str | None,
        types: Iterable[str] | None,
    ) -> httpx.Request:
        """The SSE request, resuming after ``last_id``: it waits up to
        :data:`STREAM_READ_TIMEOUT` between two bytes (keep-alives come every 15 s)."""
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        params: dict[str, Any] = {}
        if (names := _types(types)) is not None:
            params["type"] = names
        base = self.timeout if isinstance(self.timeout, httpx.Timeout) else None
        base = base or httpx.Timeout(self.timeout)
        timeout = httpx.Timeout(
            connect=base.connect, read=STREAM_READ_TIMEOUT, write=base.write, pool=base.pool
        )
        return http.build_request("GET", "/events", params=params, headers=headers, timeout=timeout)

    def _stream_auth(self) -> httpx.Auth | None:
        return self._auth_for(Call("GET", "/events", _parsed(EventPage.from_dict), signed=True))

    @staticmethod
    def _event_of(message: SSEMessage) -> Event:
        try:
            event = Event.from_dict(json.loads(message.data))
        except (ValueError, RecordFormatError) as exc:
            raise ResponseFormatError(
                f"GET /events: a streamed event is malformed: {exc}"
            ) from None
        if message.id is not None and message.id != event.id:
            raise ResponseFormatError(
                f"GET /events: the stream's id {message.id!r} is not the event's {event.id!r}"
            )
        return event

    def _register_webhook_call(
        self, url: str, event_types: Iterable[str] | None, after: str | None
    ) -> Call[Webhook]:
        body: dict[str, Any] = {"url": url}
        if (names := _types(event_types)) is not None:
            body["event_types"] = names
        if after is not None:
            body["after"] = after
        return Call(
            "POST", "/webhooks", _parsed(Webhook.from_wrapped), json=body, ok=(201,), signed=True
        )

    def _webhooks_call(self) -> Call[list[Webhook]]:
        return Call("GET", "/webhooks", _parsed(_webhooks), signed=True)

    def _delete_webhook_call(self, webhook_id: str) -> Call[Webhook]:
        return Call(
            "DELETE",
            f"/webhooks/{_segment(webhook_id)}",
            _parsed(Webhook.from_wrapped),
            signed=True,
        )

    def _webhook_attempts_call(self, webhook_id: str, limit: int) -> Call[list[WebhookAttempt]]:
        return Call(
            "GET",
            f"/webhooks/{_segment(webhook_id)}/attempts",
            _parsed(_attempts),
            params={"limit": int(limit)},
            signed=True,
        )


def _segment(value: str) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise ValueError("a webhook id is a non-empty string without '/'")
    return value
