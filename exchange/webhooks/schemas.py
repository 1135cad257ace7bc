"""JSON shapes of the webhook endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from exchange.events.schemas import EventType


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="Where to POST each event: an absolute http or https URL."
    )
    event_types: Annotated[list[EventType], Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="Deliver only these event types (default: all)."
    )
    after: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None,
        description="Deliver the events after this event id (a cursor of GET /events); "
        "default: only events that happen from now on.",
    )


class WebhookPublic(BaseModel):
    id: str
    url: str
    event_types: list[str] | None
    created_at: int
    cursor: str | None = Field(
        description="Id of the last event delivered (or passed as not for you); the next "
        "delivery is the first event after it."
    )
    delivered: int = Field(description="Events the receiver has taken (2xx).")
    attempts: int = Field(description="Failed attempts at the next event so far.")
    next_attempt_at: int | None = Field(description="When it is tried again (ms), if failing.")
    failing_since: int | None
    last_error: str | None
    last_delivered_at: int | None
    signing_key_id: str = Field(
        description="The log key id deliveries are signed with (its public key: "
        "/.well-known/shancheng/log-key)."
    )


class WebhookCreated(BaseModel):
    webhook: WebhookPublic


class WebhookList(BaseModel):
    items: list[WebhookPublic]


class AttemptPublic(BaseModel):
    event_id: str
    attempt: int = Field(description="1 for the first try of this event, 2 for the first retry…")
    at: int
    status: int | None = Field(description="The receiver's HTTP status (null: no answer).")
    error: str | None
    duration_ms: int


class AttemptList(BaseModel):
    items: list[AttemptPublic] = Field(description="Newest first.")
