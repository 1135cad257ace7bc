"""``GET /events``: the event feed, as JSON pages or as Server-Sent Events.

One operation, two forms chosen by ``Accept``: ``text/event-stream`` streams the
events as they happen (``id:`` the event id, ``event:`` its type, ``data:`` its
JSON; keep-alive comments meanwhile) and resumes after ``Last-Event-ID``;
anything else answers one page ``{events, next}`` after ``?after=``. Both are
signed requests and hold only the events the signer may see
(:mod:`exchange.events.visibility`).

A stream ends by itself after ``events_stream_max_s`` (clients reconnect with
``Last-Event-ID``), when the client goes away, and when the server shuts down
(sse-starlette watches uvicorn's exit signal; the feed watcher's stop ends it too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from exchange.api.deps import (
    CurrentParticipant,
    EventStreamsDep,
    EventWatcherDep,
    SessionFactoryDep,
    SettingsDep,
    StreamCount,
)
from exchange.api.examples import response_example
from exchange.api.responses import signed_errors
from exchange.events.cursor import Position
from exchange.events.feed import Page, feed_head, read_page, resolve_cursor
from exchange.events.schemas import EventPage, EventType
from exchange.events.visibility import Viewer
from exchange.events.watcher import FeedWatcher
from exchange.log.sequencer import SessionFactory
from exchange.settings import Settings

__all__ = ["router"]

router = APIRouter(tags=["events"])

STREAM_PAGE = 100
"""Events read per query while a stream catches up."""

_STREAM_DOC: dict[str, Any] = {
    "schema": {"type": "string", "format": "binary"},
}


@dataclass(frozen=True, slots=True)
class _Feed:
    """What reading the feed needs: sessions, settings, the watcher of its head
    (``None`` when the app runs without its services) and the open stream count."""

    session_factory: SessionFactory
    settings: Settings
    watcher: FeedWatcher | None
    streams: StreamCount


async def _feed(
    session_factory: SessionFactoryDep,
    settings: SettingsDep,
    watcher: EventWatcherDep,
    streams: EventStreamsDep,
) -> _Feed:
    return _Feed(session_factory, settings, watcher, streams)


Feed = Annotated[_Feed, Depends(_feed)]


def _page(
    feed: _Feed,
    viewer: Viewer,
    cursor: str | Position | None,
    types: frozenset[str] | None,
    limit: int,
) -> tuple[Position, Page]:
    with feed.session_factory() as session:
        after = cursor if isinstance(cursor, Position) else resolve_cursor(session, cursor)
        page = read_page(
            session, viewer, after, limit=limit, scan=feed.settings.events_scan_max, types=types
        )
    return after, page


def _head(feed: _Feed) -> tuple[int, int]:
    with feed.session_factory() as session:
        return feed_head(session)


async def _current_head(feed: _Feed) -> tuple[int, int] | None:
    """The feed's head: the watcher's (in memory), or read from the database when the
    app runs without its services (no lifespan)."""
    if feed.watcher is not None:
        return feed.watcher.head
    return await run_in_threadpool(_head, feed)


def _stopping(feed: _Feed) -> bool:
    return feed.watcher is not None and feed.watcher.stopping


async def _stream(
    feed: _Feed, viewer: Viewer, start: Position, types: frozenset[str] | None
) -> AsyncIterator[ServerSentEvent]:
    feed.streams.open += 1
    try:
        async for message in _messages(feed, viewer, start, types):
            yield message
    finally:
        feed.streams.open -= 1


async def _messages(
    feed: _Feed,
    viewer: Viewer,
    start: Position,
    types: frozenset[str] | None,
) -> AsyncIterator[ServerSentEvent]:
    settings = feed.settings
    cursor = start
    deadline = anyio.current_time() + settings.events_stream_max_s
    while not _stopping(feed) and anyio.current_time() < deadline:
        seen = await _current_head(feed)
        _, page = await run_in_threadpool(_page, feed, viewer, cursor, types, STREAM_PAGE)
        for event in page.events:
            yield ServerSentEvent(
                data=json.dumps(event.body, ensure_ascii=False, separators=(",", ":")),
                id=event.id,
                event=event.type,
            )
        if page.next is not None:
            cursor = page.next
        if page.more:
            continue
        # Wait for the feed to grow past what this page read (the watcher's head moves).
        while not _stopping(feed) and anyio.current_time() < deadline:
            await anyio.sleep(settings.events_poll_s)
            if await _current_head(feed) != seen:
                break


@router.get(
    "/events",
    response_model=EventPage,
    summary="Events you may see: a JSON page after a cursor, or a live SSE stream",
    responses={
        200: {
            "description": "A page of events (application/json), or with "
            "`Accept: text/event-stream` the stream of events (`id:` the event id, "
            "`event:` its type, `data:` the event JSON), kept alive with comments.",
            "content": {
                "application/json": {"example": response_example("list_events")},
                "text/event-stream": _STREAM_DOC,
            },
            "headers": {
                "Cache-Control": {
                    "description": "Streams are never cached.",
                    "schema": {"type": "string"},
                    "example": "no-store",
                }
            },
        },
        **signed_errors(
            {
                400: "invalid_cursor (malformed, an unknown anchor event, or beyond the log)",
                422: "invalid_request (limit out of range, an unknown event type)",
            }
        ),
    },
)
async def get_events(
    request: Request,
    principal: CurrentParticipant,
    feed: Feed,
    after: Annotated[
        str | None,
        Query(
            max_length=40,
            description="An event id: answer the events after it (default: from the start).",
            examples=["41"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most events in the page.")] = 100,
    event_type: Annotated[
        list[EventType] | None,
        Query(alias="type", description="Only these event types (repeat the parameter)."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=40,
            description="The id of the last event received (an SSE client sends it when "
            "it reconnects); it takes precedence over ?after=.",
        ),
    ] = None,
) -> Any:
    """Order placed (= paid: the escrow is held by the same record), delivered, accepted,
    disputed, refunded; dispute released; settlement paid; access revoked; anchor final
    for a log range. Each event's id is its log index (or `anchor:<tree size>`): ids
    only grow, and resuming after one never skips or repeats an event. Visible to the
    record's actor, the order's buyer and the listing's providers; anchors to everyone;
    operators see all."""
    viewer = Viewer(principal.key_id, principal.is_operator)
    types = None if event_type is None else frozenset(str(t) for t in event_type)
    cursor = last_event_id if last_event_id is not None else after
    if "text/event-stream" in request.headers.get("accept", ""):
        with feed.session_factory() as session:
            start = await run_in_threadpool(resolve_cursor, session, cursor)
        return EventSourceResponse(
            _stream(feed, viewer, start, types),
            ping=feed.settings.events_ping_s,
            send_timeout=30,
        )
    _, page = await run_in_threadpool(_page, feed, viewer, cursor, types, limit)
    return EventPage.model_validate(
        {"events": [event.body for event in page.events], "next": page.next_id}
    )
