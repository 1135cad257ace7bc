"""Registering, listing and removing webhooks (not log records: they are a
participant's delivery settings, not a change of the market's state)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from exchange.errors import ConflictError, ExchangeError, NotFoundError
from exchange.events.cursor import Position
from exchange.events.feed import last_log_index, resolve_cursor
from exchange.events.models import AnchorEvent
from exchange.participants.models import Principal
from exchange.webhooks.models import Webhook, WebhookAttempt
from exchange.webhooks.schemas import AttemptPublic, WebhookCreate, WebhookPublic

__all__ = [
    "WebhookNotFoundError",
    "attempts_of",
    "delete_webhook",
    "list_webhooks",
    "public",
    "register_webhook",
]


class InvalidWebhookUrlError(ExchangeError):
    status = 422
    code = "invalid_webhook_url"


class TooManyWebhooksError(ConflictError):
    code = "too_many_webhooks"


class WebhookNotFoundError(NotFoundError):
    code = "webhook_not_found"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host and no fragment (422 otherwise)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise InvalidWebhookUrlError(f"url is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhookUrlError("url must be an http or https URL")
    if not parts.hostname:
        raise InvalidWebhookUrlError("url has no host")
    if parts.fragment or "#" in url:
        raise InvalidWebhookUrlError("url must not have a fragment")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url) or not url.isascii():
        raise InvalidWebhookUrlError("url must be ASCII without spaces or control characters")
    return url


def feed_end(session: Session) -> str | None:
    """The id of the feed's last position now (``None``: the feed is empty)."""
    last = last_log_index(session)
    if last < 0:
        return None
    anchor = session.execute(
        select(func.max(col(AnchorEvent.tree_size))).where(col(AnchorEvent.slot) == last)
    ).scalar_one()
    return Position(last, 1, int(anchor)).event_id if anchor else Position(last, 0, 0).event_id


def register_webhook(
    session: Session, principal: Principal, body: WebhookCreate, *, limit: int
) -> Webhook:
    url = check_url(body.url)
    cursor: str | None
    if body.after is not None:
        resolve_cursor(session, body.after)  # 400 invalid_cursor
        cursor = body.after
    else:
        cursor = feed_end(session)
    count = session.execute(
        select(func.count()).where(col(Webhook.owner_key_id) == principal.key_id)
    ).scalar_one()
    if count >= limit:
        raise TooManyWebhooksError(
            f"you have {count} webhooks, the most one participant may register; delete one first"
        )
    types = None if body.event_types is None else sorted({str(t) for t in body.event_types})
    webhook = Webhook(
        id=str(uuid.uuid4()),
        owner_key_id=principal.key_id,
        owner_is_operator=principal.is_operator,
        url=url,
        event_types=types,
        created_at=_now_ms(),
        cursor=cursor,
    )
    session.add(webhook)
    session.commit()
    session.refresh(webhook)
    return webhook


def list_webhooks(session: Session, principal: Principal) -> Sequence[Webhook]:
    return (
        session.execute(
            select(Webhook)
            .where(col(Webhook.owner_key_id) == principal.key_id)
            .order_by(col(Webhook.created_at), col(Webhook.id))
        )
        .scalars()
        .all()
    )


def _owned(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    """The webhook, if the principal owns it (or is an operator); 404 otherwise, so that
    nobody learns of another's webhooks."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or not (principal.is_operator or webhook.owner_key_id == principal.key_id):
        raise WebhookNotFoundError(f"no webhook {webhook_id}")
    return webhook


def delete_webhook(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    """Remove the webhook and its attempts; a delivery under way finishes, nothing after."""
    webhook = _owned(session, principal, webhook_id)
    session.expunge(webhook)
    session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.webhook_id) == webhook_id))
    session.execute(delete(Webhook).where(col(Webhook.id) == webhook_id))
    session.commit()
    return webhook


def attempts_of(
    session: Session, principal: Principal, webhook_id: str, limit: int
) -> list[AttemptPublic]:
    _owned(session, principal, webhook_id)
    rows = session.execute(
        select(WebhookAttempt)
        .where(col(WebhookAttempt.webhook_id) == webhook_id)
        .order_by(col(WebhookAttempt.id).desc())
        .limit(limit)
    ).scalars()
    return [AttemptPublic.model_validate(row, from_attributes=True) for row in rows]


def public(webhook: Webhook, signing_key_id: str) -> WebhookPublic:
    return WebhookPublic(
        id=webhook.id,
        url=webhook.url,
        event_types=webhook.event_types,
        created_at=webhook.created_at,
        cursor=webhook.cursor,
        delivered=webhook.delivered,
        attempts=webhook.attempts,
        next_attempt_at=webhook.next_attempt_at,
        failing_since=webhook.failing_since,
        last_error=webhook.last_error,
        last_delivered_at=webhook.last_delivered_at,
        signing_key_id=signing_key_id,
    )
