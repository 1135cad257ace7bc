"""The webhook delivery worker: posts each event to each webhook that may see it,
in feed order, signed by the exchange, retried with backoff until a 2xx.

Every API process runs one; they share the work through leases on the webhook
rows (:mod:`exchange.webhooks.models`): a pass claims each due webhook with a
conditional update (free, or its lease ran out), and a pool thread then sends
that webhook its events one at a time, advancing its cursor after each 2xx.
A failure (no answer within ``webhook_timeout_s``, or any status but 2xx)
records the attempt, sets the next attempt after :func:`retry_delay` and lets
the webhook go; the same event is tried again then, and no later one before it.
Every write names the lease holder, so a worker that lost its lease (it stalled
past it) changes nothing. A worker killed mid-POST leaves its lease to run out:
the event is posted again (at least once; receivers deduplicate by event id).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlmodel import col

from exchange.events.feed import Event, read_page, resolve_cursor
from exchange.events.visibility import Viewer
from exchange.events.watcher import FeedWatcher
from exchange.log.sequencer import SessionFactory
from exchange.periodic import PeriodicThread
from exchange.settings import Settings
from exchange.webhooks.backoff import retry_delay
from exchange.webhooks.models import Webhook, WebhookAttempt
from exchange.webhooks.signing import EVENT_ID_HEADER, WebhookSigner
from ledger.sm2 import SM2PrivateKey

__all__ = ["MAX_EVENTS_PER_CLAIM", "WebhookDispatcher"]

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_CLAIM = 100
"""Events sent to one webhook per claim, before it goes back to the pass (fairness)."""

_LEASE_MARGIN_S = 30.0
_USER_AGENT = "shancheng-webhooks/0.1"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookDispatcher(PeriodicThread):
    name = "webhooks"

    def __init__(
        self,
        session_factory: SessionFactory,
        log_key: SM2PrivateKey,
        settings: Settings,
        watcher: FeedWatcher | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(settings.webhook_poll_s)
        self._session_factory = session_factory
        self._settings = settings
        self._watcher = watcher
        self._signer = WebhookSigner(log_key)
        self._owner = secrets.token_hex(8)
        self._lease_ms = int((settings.webhook_timeout_s + _LEASE_MARGIN_S) * 1000)
        self._client = httpx.Client(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": _USER_AGENT},
        )
        self._pool = ThreadPoolExecutor(
            settings.webhook_concurrency, thread_name_prefix="webhook-delivery"
        )
        self._busy: set[str] = set()
        self._idle: dict[str, tuple[int, int]] = {}
        """Webhook id → the feed head at which it had nothing left to send."""
        self._lock = threading.Lock()

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # -- the pass --------------------------------------------------------------------

    def tick(self) -> None:
        head = self._watcher.head if self._watcher is not None else None
        now = _now_ms()
        with self._session_factory() as session:
            due = (
                session.execute(
                    select(col(Webhook.id))
                    .where(
                        or_(
                            col(Webhook.next_attempt_at).is_(None),
                            col(Webhook.next_attempt_at) <= now,
                        )
                    )
                    .where(or_(col(Webhook.lease_until).is_(None), col(Webhook.lease_until) < now))
                    .order_by(col(Webhook.next_attempt_at), col(Webhook.id))
                )
                .scalars()
                .all()
            )
        listed = set(due)
        with self._lock:  # forget webhooks deleted (or failing) since
            self._idle = {k: v for k, v in self._idle.items() if k in listed}
        for webhook_id in due:
            if self.stopping:
                return
            with self._lock:
                if webhook_id in self._busy:
                    continue
                if head is not None and self._idle.get(webhook_id) == head:
                    continue
            if not self._claim(webhook_id, now):
                continue
            with self._lock:
                self._busy.add(webhook_id)
            try:
                self._pool.submit(self._deliver, webhook_id)
            except RuntimeError:  # the pool is shutting down
                self._release(webhook_id)
                with self._lock:
                    self._busy.discard(webhook_id)
                return

    def _claim(self, webhook_id: str, now: int) -> bool:
        with self._session_factory() as session:
            result = session.execute(
                update(Webhook)
                .where(col(Webhook.id) == webhook_id)
                .where(or_(col(Webhook.lease_until).is_(None), col(Webhook.lease_until) < now))
                .values(lease_owner=self._owner, lease_until=now + self._lease_ms)
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _held(self, webhook_id: str, **values: Any) -> bool:
        """Update the webhook while this worker holds its lease; whether it still did."""
        with self._session_factory() as session:
            result = session.execute(
                update(Webhook)
                .where(col(Webhook.id) == webhook_id)
                .where(col(Webhook.lease_owner) == self._owner)
                .values(**values)
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _release(self, webhook_id: str, **values: Any) -> None:
        self._held(webhook_id, lease_owner=None, lease_until=None, **values)

    # -- one webhook -----------------------------------------------------------------

    def _deliver(self, webhook_id: str) -> None:
        try:
            self._deliver_events(webhook_id)
        except Exception:
            logger.exception("delivering to webhook %s failed; it is tried again later", webhook_id)
            self._release(webhook_id)
        finally:
            with self._lock:
                self._busy.discard(webhook_id)

    def _deliver_events(self, webhook_id: str) -> None:
        for _ in range(MAX_EVENTS_PER_CLAIM):
            if self.stopping:
                break
            head = self._watcher.head if self._watcher is not None else None
            found = self._next_event(webhook_id)
            if found is None:  # deleted, or the lease was lost
                return
            webhook, event, next_cursor, more = found
            if event is None:
                if next_cursor is not None and next_cursor != webhook.cursor:
                    self._held(webhook_id, cursor=next_cursor)
                if more:
                    continue
                if head is not None:
                    with self._lock:
                        self._idle[webhook_id] = head
                break
            outcome = self._post(webhook, event)
            if not self._settle(webhook, event, outcome):
                return
            if not outcome.ok:
                return
        self._release(webhook_id)

    def _next_event(self, webhook_id: str) -> tuple[Webhook, Event | None, str | None, bool] | None:
        with self._session_factory() as session:
            webhook = session.get(Webhook, webhook_id)
            if webhook is None or webhook.lease_owner != self._owner:
                return None
            session.expunge(webhook)
            viewer = Viewer(webhook.owner_key_id, webhook.owner_is_operator)
            types = None if webhook.event_types is None else frozenset(webhook.event_types)
            after = resolve_cursor(session, webhook.cursor)
            page = read_page(
                session, viewer, after, limit=1, scan=self._settings.events_scan_max, types=types
            )
        event = page.events[0] if page.events else None
        return webhook, event, page.next_id, page.more

    def _post(self, webhook: Webhook, event: Event) -> _Outcome:
        body = json.dumps(event.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = self._client.build_request(
            "POST",
            webhook.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                EVENT_ID_HEADER: event.id,
                "Shancheng-Event-Type": event.type,
                "Shancheng-Webhook-Id": webhook.id,
            },
        )
        self._signer.sign(request)
        started = time.monotonic()
        try:
            response = self._client.send(request)
            response.close()
        except httpx.HTTPError as exc:
            return _Outcome(None, f"{type(exc).__name__}: {exc}"[:500], _elapsed_ms(started))
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return _Outcome(response.status_code, error, _elapsed_ms(started))

    def _settle(self, webhook: Webhook, event: Event, outcome: _Outcome) -> bool:
        """Record the attempt and move the webhook on (or set its retry); whether this
        worker still held the webhook."""
        now = _now_ms()
        attempt = webhook.attempts + 1
        values: Mapping[str, Any]
        if outcome.ok:
            values = {
                "cursor": event.id,
                "attempts": 0,
                "next_attempt_at": None,
                "failing_since": None,
                "last_error": None,
                "last_delivered_at": now,
                "delivered": webhook.delivered + 1,
                "lease_until": now + self._lease_ms,
            }
        else:
            delay = retry_delay(
                attempt,
                base=self._settings.webhook_backoff_base_s,
                cap=self._settings.webhook_backoff_cap_s,
            )
            values = {
                "attempts": attempt,
                "next_attempt_at": now + int(delay * 1000),
                "failing_since": webhook.failing_since or now,
                "last_error": outcome.error,
                "lease_owner": None,
                "lease_until": None,
            }
        with self._session_factory() as session:
            result = session.execute(
                update(Webhook)
                .where(col(Webhook.id) == webhook.id)
                .where(col(Webhook.lease_owner) == self._owner)
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return False
            session.add(
                WebhookAttempt(
                    webhook_id=webhook.id,
                    event_id=event.id,
                    attempt=attempt,
                    at=now,
                    status=outcome.status,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            session.commit()
        return True


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
