"""Typed answers of the event feed and webhook endpoints: frozen dataclasses with
``from_dict`` (strict about what the SDK relies on, tolerant of added fields)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError, SignedRecord

__all__ = ["AnchorFinal", "Event", "EventPage", "Webhook", "WebhookAttempt"]


class _Obj(JSONObject):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AnchorFinal:
    """The log's entries [``from_size``, ``tree_size``) are covered by a final anchor."""

    tree_size: int
    from_size: int
    root: str
    chain_id: int
    registry_address: str
    tx_hash: str | None
    block_number: int | None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> AnchorFinal:
        o = _Obj(data, path)
        return cls(
            tree_size=o.integer("tree_size", minimum=1),
            from_size=o.integer("from_size"),
            root=o.hex64("root"),
            chain_id=o.integer("chain_id"),
            registry_address=o.text("registry_address"),
            tx_hash=o.opt_text("tx_hash"),
            block_number=o.opt_integer("block_number"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the feed. ``id`` is its log index (``"42"``) or ``"anchor:<tree
    size>"``: deduplicate by it, and pass it as ``after`` to resume after it.
    ``record`` is the signed record behind it (verify it with its actor's key),
    ``None`` for ``anchor.final``, which has ``anchor``. What it is about:
    ``order_id`` (order events), ``withdrawal_id`` (``withdrawal.*``),
    ``certificate`` (the number, ``certificate.*``); ``listing_id`` is the order's
    or the certificate's listing."""

    id: str
    type: str
    created_at: int
    order_id: str | None
    listing_id: str | None
    withdrawal_id: str | None
    certificate: str | None
    log_index: int | None
    leaf_hash: str | None
    record: SignedRecord | None
    anchor: AnchorFinal | None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Event:
        o = _Obj(data, path)
        log = o.obj("log") if o.raw("log") is not None else None
        record = None
        if o.raw("record") is not None:
            record = SignedRecord.from_dict(o.mapping("record"))
        anchor = None
        if o.raw("anchor") is not None:
            anchor = AnchorFinal.from_dict(o.raw("anchor"), path=o.path("anchor"))
        event = cls(
            id=o.text("id"),
            type=o.text("type"),
            created_at=o.integer("created_at"),
            order_id=o.opt_text("order_id"),
            listing_id=o.opt_text("listing_id"),
            withdrawal_id=o.opt_text("withdrawal_id"),
            certificate=o.opt_text("certificate"),
            log_index=None if log is None else log.integer("index"),
            leaf_hash=None if log is None else log.hex64("leaf_hash"),
            record=record,
            anchor=anchor,
        )
        if record is not None and event.leaf_hash != record.leaf_hash().hex():
            raise RecordFormatError(
                "the record is not the one at log.leaf_hash", path=o.path("record")
            )
        return event


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[Event, ...]
    next: str | None
    """Pass as ``after`` for the events after this page (``None``: the feed is empty)."""

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> EventPage:
        o = _Obj(data, path)
        return cls(
            events=o.items("events", lambda item, where: Event.from_dict(item, path=where)),
            next=o.opt_text("next"),
        )


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    event_types: tuple[str, ...] | None
    created_at: int
    cursor: str | None
    delivered: int
    attempts: int
    next_attempt_at: int | None
    failing_since: int | None
    last_error: str | None
    last_delivered_at: int | None
    signing_key_id: str

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Webhook:
        o = _Obj(data, path)
        return cls(
            id=o.text("id"),
            url=o.text("url"),
            event_types=o.strings("event_types") if o.raw("event_types") is not None else None,
            created_at=o.integer("created_at"),
            cursor=o.opt_text("cursor"),
            delivered=o.integer("delivered"),
            attempts=o.integer("attempts"),
            next_attempt_at=o.opt_integer("next_attempt_at"),
            failing_since=o.opt_integer("failing_since"),
            last_error=o.opt_text("last_error"),
            last_delivered_at=o.opt_integer("last_delivered_at"),
            signing_key_id=o.hex64("signing_key_id"),
        )

    @classmethod
    def from_wrapped(cls, data: Any) -> Webhook:
        """``{"webhook": …}`` (registered, deleted)."""
        return cls.from_dict(_Obj(data, "").raw("webhook"), path="webhook")


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    event_id: str
    attempt: int
    at: int
    status: int | None
    error: str | None
    duration_ms: int

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> WebhookAttempt:
        o = _Obj(data, path)
        return cls(
            event_id=o.text("event_id"),
            attempt=o.integer("attempt", minimum=1),
            at=o.integer("at"),
            status=o.opt_integer("status"),
            error=o.opt_text("error"),
            duration_ms=o.integer("duration_ms"),
        )
