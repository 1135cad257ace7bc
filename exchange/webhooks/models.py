"""Webhook tables: a participant's endpoints and every delivery attempt.

A :class:`Webhook` is delivered to in feed order, one event at a time: ``cursor``
is the id of the last event it has been given (or passed, when not for it), so
an event is retried until the receiver takes it before the next one is sent.
``attempts`` / ``next_attempt_at`` are the retry state of the event after the
cursor. ``lease_owner`` / ``lease_until`` let one delivery worker at a time
(across API processes) deliver to a webhook: a worker claims it with a
conditional update, and a crashed worker's lease runs out (the event is then
sent again: delivery is at least once; receivers deduplicate by event id).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Integer
from sqlmodel import Field, SQLModel

_ROWID = BigInteger().with_variant(Integer(), "sqlite")


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"

    id: str = Field(primary_key=True, max_length=36)
    owner_key_id: str = Field(index=True, max_length=64)
    owner_is_operator: bool = False
    """Operators see every event (decided at registration, from the signer's role)."""
    url: str = Field(max_length=2048)
    event_types: list[Any] | None = Field(default=None, sa_type=JSON)
    """Event types delivered; ``None``: all."""
    created_at: int = Field(sa_type=BigInteger)
    cursor: str | None = Field(default=None, max_length=40)
    """Id of the last event given or passed; ``None``: from the feed's start."""
    attempts: int = 0
    """Failed attempts at the event after ``cursor``."""
    next_attempt_at: int | None = Field(default=None, sa_type=BigInteger)
    """When that event may be tried again (ms); ``None``: now."""
    failing_since: int | None = Field(default=None, sa_type=BigInteger)
    last_error: str | None = Field(default=None, max_length=500)
    last_delivered_at: int | None = Field(default=None, sa_type=BigInteger)
    delivered: int = Field(default=0, sa_type=BigInteger)
    """Events the receiver has taken (2xx)."""
    lease_owner: str | None = Field(default=None, max_length=32)
    lease_until: int | None = Field(default=None, sa_type=BigInteger)


class WebhookAttempt(SQLModel, table=True):
    """One POST of one event to one webhook, and how it ended."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, sa_type=_ROWID, primary_key=True)
    webhook_id: str = Field(index=True, max_length=36)
    event_id: str = Field(max_length=40)
    attempt: int
    """1 for the first try of this event, 2 for the first retry, …"""
    at: int = Field(sa_type=BigInteger)
    status: int | None = None
    """The receiver's HTTP status; ``None`` when it did not answer."""
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int = Field(sa_type=BigInteger)


webhook_table = SQLModel.metadata.tables["webhook"]
webhook_attempt_table = SQLModel.metadata.tables["webhook_attempt"]
