"""Reading the event feed: the events after a cursor that a viewer may see.

:func:`read_page` merges the log's event records (index order) with the recorded
anchor events (:mod:`exchange.events.models`) by :class:`~exchange.events.cursor.Position`,
keeps those the viewer may see (:mod:`exchange.events.visibility`) and of the
asked types, and returns them with the cursor to continue from. It reads the
log's last index first and nothing beyond it, then the entries, then the anchor
events, so on PostgreSQL (read committed: each statement sees later commits) as
on SQLite a page never holds an entry without the anchor events recorded before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from exchange.events.cursor import START, InvalidCursorError, Position, parse_event_id
from exchange.events.kinds import ANCHOR_FINAL, event_type_of, record_types_for
from exchange.events.models import AnchorEvent
from exchange.events.visibility import EVERYONE, Subject, Viewer, read_parties
from exchange.log.models import LogEntry

__all__ = ["Event", "Page", "feed_head", "read_page", "resolve_cursor"]

_LAST: int = 2**62
"""A tree size beyond any: ``Position(s, 1, _LAST)`` is the end of slot ``s``."""


@dataclass(frozen=True, slots=True)
class Event:
    position: Position
    type: str
    body: dict[str, Any]
    """The event's JSON (:class:`exchange.events.schemas.EventPublic`)."""

    @property
    def id(self) -> str:
        return self.position.event_id


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    next: Position | None
    """Where the next page starts (``None``: nothing examined, the feed is empty)."""
    more: bool = False
    """The page stopped before the feed's end (``limit`` events, or ``scan`` examined)."""

    @property
    def next_id(self) -> str | None:
        return None if self.next is None else self.next.event_id


def last_log_index(session: Session) -> int:
    value = session.execute(select(func.max(col(LogEntry.index)))).scalar_one()
    return -1 if value is None else int(value)


def feed_head(session: Session) -> tuple[int, int]:
    """(last log index, largest anchor event tree size): changes when the feed grows."""
    anchors = session.execute(select(func.max(col(AnchorEvent.tree_size)))).scalar_one()
    return last_log_index(session), int(anchors or 0)


def resolve_cursor(session: Session, event_id: str | None) -> Position:
    """The position an event id names (``None``: the start); 400 ``invalid_cursor``
    for an id that is malformed, an anchor event that was never recorded, or a log
    index beyond the log's end."""
    if event_id is None:
        return START
    index, tree_size = parse_event_id(event_id)
    if tree_size is not None:
        slot = session.execute(
            select(col(AnchorEvent.slot)).where(col(AnchorEvent.tree_size) == tree_size)
        ).scalar_one_or_none()
        if slot is None:
            raise InvalidCursorError(f"no anchor.final event for tree size {tree_size}")
        return Position(int(slot), 1, tree_size)
    assert index is not None
    last = last_log_index(session)
    if index > last:
        raise InvalidCursorError(f"event {index} is beyond the log's end (its last index: {last})")
    return Position(index, 0, 0)


def read_page(
    session: Session,
    viewer: Viewer,
    after: Position,
    *,
    limit: int,
    scan: int,
    types: frozenset[str] | None = None,
) -> Page:
    """At most ``limit`` events after ``after`` that ``viewer`` may see (of ``types``,
    or all), examining at most ``scan`` log entries and ``scan`` anchor events."""
    last = last_log_index(session)
    record_types = record_types_for(types)
    entries = _entries(session, after, last, record_types, scan) if record_types else []
    frontier = Position(last, 1, _LAST)
    if len(entries) == scan:
        frontier = Position(int(entries[-1][0]), 1, _LAST)
    anchors: list[AnchorEvent] = []
    if types is None or ANCHOR_FINAL in types:
        anchors = _anchors(session, after, frontier.slot, scan)
        if len(anchors) == scan:
            frontier = min(frontier, Position(anchors[-1].slot, 1, anchors[-1].tree_size))
    candidates = sorted(
        [(Position(int(row[0]), 0, 0), row) for row in entries]
        + [(Position(a.slot, 1, a.tree_size), a) for a in anchors],
        key=lambda pair: pair[0],
    )
    candidates = [pair for pair in candidates if after < pair[0] <= frontier]
    log_rows = [row for position, row in candidates if position.kind == 0]
    log_events = _log_events(session, viewer, log_rows)
    events: list[Event] = []
    for position, source in candidates:
        if position.kind == 0:
            event = log_events.get(position.slot)
        else:
            event = _anchor_event(source) if EVERYONE.admits(viewer) else None
        if event is not None and (types is None or event.type in types):
            events.append(event)
            if len(events) == limit:
                return Page(events, position, more=True)
    end = frontier if frontier.tree_size != _LAST else Position(frontier.slot, 0, 0)
    reached = max([after, end, *(position for position, _ in candidates[-1:])])
    more = frontier.slot < last or frontier.tree_size != _LAST
    return Page(events, None if reached == START else reached, more=more)


def _entries(
    session: Session, after: Position, last: int, record_types: Iterable[str], scan: int
) -> list[Any]:
    return list(
        session.execute(
            select(
                col(LogEntry.index),
                col(LogEntry.leaf_hash),
                col(LogEntry.leaf),
                col(LogEntry.record_type),
            )
            .where(col(LogEntry.index) > after.slot)
            .where(col(LogEntry.index) <= last)
            .where(col(LogEntry.record_type).in_(list(record_types)))
            .order_by(col(LogEntry.index))
            .limit(scan)
        ).all()
    )


def _anchors(session: Session, after: Position, last_slot: int, scan: int) -> list[AnchorEvent]:
    return list(
        session.execute(
            select(AnchorEvent)
            .where(col(AnchorEvent.slot) >= after.slot)
            .where(col(AnchorEvent.slot) <= last_slot)
            .order_by(col(AnchorEvent.slot), col(AnchorEvent.tree_size))
            .limit(scan)
        )
        .scalars()
        .all()
    )


def _log_events(session: Session, viewer: Viewer, rows: list[Any]) -> Mapping[int, Event]:
    """The events of these log rows that ``viewer`` may see, by index."""
    parsed = []
    for index, leaf_hash, leaf, record_type in rows:
        signed = json.loads(bytes(leaf))
        subject = Subject.of(record_type, bytes(leaf_hash).hex(), signed["record"])
        parsed.append((int(index), signed, subject))
    parties = read_parties(session, [subject for *_, subject in parsed])
    events: dict[int, Event] = {}
    for index, signed, subject in parsed:
        if not parties.audience(subject).admits(viewer):
            continue
        record = signed["record"]
        event_type = event_type_of(subject.record_type, record["payload"])
        if event_type is None:  # pragma: no cover - the query asked for event types only
            continue
        position = Position(index, 0, 0)
        events[index] = Event(
            position,
            event_type,
            {
                "id": position.event_id,
                "type": event_type,
                "created_at": record["timestamp"],
                "order_id": subject.order_id,
                "listing_id": parties.listing_of(subject),
                "withdrawal_id": subject.withdrawal_id,
                "certificate": subject.certificate,
                "log": {"index": index, "leaf_hash": subject.leaf_hash},
                "record": signed,
                "anchor": None,
            },
        )
    return events


def _anchor_event(row: AnchorEvent) -> Event:
    position = Position(row.slot, 1, row.tree_size)
    return Event(
        position,
        ANCHOR_FINAL,
        {
            "id": position.event_id,
            "type": ANCHOR_FINAL,
            "created_at": row.recorded_at,
            "order_id": None,
            "listing_id": None,
            "withdrawal_id": None,
            "certificate": None,
            "log": None,
            "record": None,
            "anchor": {
                "tree_size": row.tree_size,
                "from_size": row.from_size,
                "root": row.root,
                "chain_id": row.chain_id,
                "registry_address": row.registry_address,
                "tx_hash": row.tx_hash,
                "block_number": row.block_number,
            },
        },
    )
