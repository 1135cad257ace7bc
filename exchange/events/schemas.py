"""JSON shapes of the event feed (``GET /events``) and of webhook deliveries."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from exchange.events.kinds import EVENT_TYPES

EventType = StrEnum(  # type: ignore[misc]
    "EventType", {name.replace(".", "_"): name for name in EVENT_TYPES}
)
"""The feed's event types (``order.placed``, ``anchor.final``, …)."""


class EventLogRef(BaseModel):
    index: int = Field(description="The record's log index (also the event's id).")
    leaf_hash: str = Field(description="SM3 leaf hash of the record (hex).")


class AnchorFinal(BaseModel):
    tree_size: int = Field(description="The anchored checkpoint's tree size.")
    from_size: int = Field(
        description="Tree size of the previous anchor.final event (0 for the first): "
        "this one newly covers the log's entries [from_size, tree_size)."
    )
    root: str = Field(description="The checkpoint's root (hex).")
    chain_id: int
    registry_address: str
    tx_hash: str | None
    block_number: int | None


class EventPublic(BaseModel):
    id: str = Field(
        description='The event\'s id and a cursor: a log index ("42") for events from '
        'records, "anchor:<tree size>" for anchor.final. Deduplicate by it.',
        examples=["42"],
    )
    type: str = Field(examples=["order.placed"])
    created_at: int = Field(
        description="The record's timestamp, or when the anchor was seen final (ms)."
    )
    order_id: str | None = Field(description="The order the event is about.")
    listing_id: str | None = Field(
        description="That order's listing, or that certificate's (the certificate.* events)."
    )
    withdrawal_id: str | None = Field(
        description="The withdrawal the event is about (the withdrawal.* events)."
    )
    certificate: str | None = Field(
        description="The number of the certificate the event is about (the certificate.* events).",
        examples=["SC-2026-000001"],
    )
    log: EventLogRef | None = Field(description="Where the record is in the log.")
    record: dict[str, Any] | None = Field(
        description='The signed record, `{"record": {...}, "signature": base64}` '
        "(docs/bundle-v1.md): verify it with its actor's key, or fetch its receipt by log index."
    )
    anchor: AnchorFinal | None = Field(description="For anchor.final.")


class EventPage(BaseModel):
    events: list[EventPublic]
    next: str | None = Field(
        description="Pass as ?after= for the events after this page (it may move past "
        "entries that are not for you even when events is empty); null only when the "
        "feed is empty and no cursor was given."
    )
