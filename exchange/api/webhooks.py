"""``/webhooks``: a participant's endpoints for events pushed by the exchange.

Each event the owner may see (``GET /events``' rule), of the types asked, is
POSTed as JSON to the URL, in feed order, signed by the exchange's log key
(RFC 9421, sm2-sm3; exchange.webhooks.signing) and retried with backoff until a
2xx. Delivery is at least once: deduplicate by ``Shancheng-Event-Id``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from exchange.api.deps import CurrentParticipant, LogKeyDep, SessionDep, SettingsDep
from exchange.api.examples import json_body, ok
from exchange.api.params import UUID_PATTERN
from exchange.api.responses import signed_errors
from exchange.webhooks import service
from exchange.webhooks.schemas import AttemptList, WebhookCreate, WebhookCreated, WebhookList

__all__ = ["router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

WebhookId = Annotated[str, Path(pattern=UUID_PATTERN, description="The webhook's id.")]


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Register a webhook: events you may see, POSTed to a URL, signed by the exchange",
    responses={
        **ok(201, "create_webhook"),
        **signed_errors(
            {
                400: "invalid_cursor (after is not an event id of this feed)",
                409: "too_many_webhooks",
                422: "invalid_request, invalid_webhook_url",
            }
        ),
    },
    openapi_extra=json_body("create_webhook"),
)
def create_webhook(
    body: WebhookCreate,
    principal: CurrentParticipant,
    session: SessionDep,
    log_key: LogKeyDep,
    settings: SettingsDep,
) -> WebhookCreated:
    """Deliveries start with the first event after ``after`` (default: from now on).
    Verify each with the log key (/.well-known/shancheng/log-key): the signature
    covers the method, the URL as registered, the Content-Digest and
    Shancheng-Event-Id."""
    webhook = service.register_webhook(
        session, principal, body, limit=settings.webhook_max_per_participant
    )
    return WebhookCreated(webhook=service.public(webhook, log_key.key_id()))


@router.get(
    "",
    response_model=WebhookList,
    summary="Your webhooks and their delivery state",
    responses={**ok(200, "list_webhooks"), **signed_errors({422: "invalid_request"})},
)
def list_webhooks(
    principal: CurrentParticipant, session: SessionDep, log_key: LogKeyDep
) -> WebhookList:
    key_id = log_key.key_id()
    return WebhookList(
        items=[service.public(w, key_id) for w in service.list_webhooks(session, principal)]
    )


@router.get(
    "/{webhook_id}/attempts",
    response_model=AttemptList,
    summary="A webhook's delivery attempts, newest first",
    responses={
        **ok(200, "webhook_attempts"),
        **signed_errors({404: "webhook_not_found", 422: "invalid_request"}),
    },
)
def webhook_attempts(
    webhook_id: WebhookId,
    principal: CurrentParticipant,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AttemptList:
    return AttemptList(items=service.attempts_of(session, principal, webhook_id, limit))


@router.delete(
    "/{webhook_id}",
    response_model=WebhookCreated,
    summary="Remove a webhook (yours; operators: any)",
    responses={
        **ok(200, "delete_webhook"),
        **signed_errors({404: "webhook_not_found", 422: "invalid_request"}),
    },
)
def delete_webhook(
    webhook_id: WebhookId, principal: CurrentParticipant, session: SessionDep, log_key: LogKeyDep
) -> WebhookCreated:
    """Its deliveries stop: at most a POST already under way when it was removed still
    arrives."""
    webhook = service.delete_webhook(session, principal, webhook_id)
    return WebhookCreated(webhook=service.public(webhook, log_key.key_id()))
