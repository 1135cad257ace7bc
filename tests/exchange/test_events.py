"""GET /events on a real uvicorn, SQLite and PostgreSQL: what each participant sees
of a market's orders (buyer A never sees buyer B's), cursor paging and resumption
(never a skip or a repeat, anchors included), the refusals, and the SSE form
(Last-Event-ID, live events, the end of a stream when the client leaves)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_auth_support import error, running_exchange
from test_events_support import (
    FAST_EVENTS,
    Market,
    make_market,
    mark_anchor_final,
    wait_for,
    whole_feed,
)
from test_orders import BACKENDS

from clients.sdk._sse import SSEParser
from ledger.records import SignedRecord


@pytest.fixture(scope="module", params=BACKENDS)
def market(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Market]:
    """A1 accepted and settled, B refunded after a dispute, A2 placed; an anchor made
    final between B's order and A2."""
    tmp: Path = tmp_path_factory.mktemp("events")
    with running_exchange(
        live_server, tmp, request.param, events_stream_max_s=600, **FAST_EVENTS
    ) as ex:
        m = make_market(ex)
        a1 = m.order(m.buyer_a, "A1")
        m.deliver(m.buyer_a, a1)
        m.accept(m.buyer_a, a1)
        b1 = m.order(m.buyer_b, "B1")
        m.deliver(m.buyer_b, b1)
        m.dispute(m.buyer_b, b1)
        m.refund(b1)
        tree_size = mark_anchor_final(ex)
        wait_for(lambda: _anchor_recorded(m, tree_size), "the anchor event")
        m.order(m.buyer_a, "A2")
        m.orders["anchor"] = f"anchor:{tree_size}"
        yield m


def _anchor_recorded(m: Market, tree_size: int) -> bool:
    events, _ = whole_feed(m.ex, m.ex.operator, type="anchor.final")
    return any(e["id"] == f"anchor:{tree_size}" for e in events)


def _story(events: list[dict[str, Any]], m: Market) -> list[tuple[str, str]]:
    names = {order_id: name for name, order_id in m.orders.items()}
    listings = {m.listing_id: "L", m.other_listing_id: "other L"}
    return [
        (
            e["type"],
            names[e["order_id"]]
            if e["order_id"]
            else listings[e["listing_id"]]
            if e["certificate"]
            else e["id"].split(":")[0],
        )
        for e in events
    ]


A1 = [
    ("order.placed", "A1"),
    ("order.delivered", "A1"),
    ("order.accepted", "A1"),
    ("settlement.paid", "A1"),
]
B1 = [
    ("order.placed", "B1"),
    ("order.delivered", "B1"),
    ("order.disputed", "B1"),
    ("order.refunded", "B1"),
]
TAIL = [("anchor.final", "anchor"), ("order.placed", "A2")]
ISSUED = [("certificate.issued", "L")]
OTHER_ISSUED = [("certificate.issued", "other L")]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("buyer_a", A1 + TAIL),
        ("buyer_b", [*B1, ("anchor.final", "anchor")]),
        ("owner", ISSUED + A1 + B1 + TAIL),
        ("co_provider", ISSUED + A1 + B1 + TAIL),
        ("other_provider", [*OTHER_ISSUED, ("anchor.final", "anchor")]),
        ("auditor", [("anchor.final", "anchor")]),
        ("operator", ISSUED + OTHER_ISSUED + A1 + B1 + TAIL),
    ],
)
def test_each_participant_sees_what_is_theirs(
    market: Market, who: str, expected: list[tuple[str, str]]
) -> None:
    key = market.ex.operator if who == "operator" else getattr(market, who)
    events, _ = whole_feed(market.ex, key)
    assert _story(events, market) == expected


def test_events_carry_their_signed_record_and_log_position(market: Market) -> None:
    events, _ = whole_feed(market.ex, market.buyer_a)
    for event in events:
        if event["type"] == "anchor.final":
            assert event["record"] is None and event["log"] is None
            anchor = event["anchor"]
            assert event["id"] == f"anchor:{anchor['tree_size']}"
            assert 0 <= anchor["from_size"] < anchor["tree_size"]
            continue
        signed = SignedRecord.from_dict(event["record"])
        assert event["id"] == str(event["log"]["index"])
        assert signed.leaf_hash().hex() == event["log"]["leaf_hash"]
        entry = market.ex.entry(event["log"]["index"])
        assert entry["leaf_hash"] == event["log"]["leaf_hash"]
        assert event["listing_id"] == market.listing_id
        assert event["created_at"] == signed.record.timestamp


def test_paging_one_by_one_matches_the_whole_feed_and_resumes_anywhere(market: Market) -> None:
    everything, last = whole_feed(market.ex, market.owner)
    one_by_one, _ = whole_feed(market.ex, market.owner, limit=1)
    assert one_by_one == everything
    ids = [e["id"] for e in everything]
    for position, event_id in enumerate(ids):
        rest, _ = whole_feed(market.ex, market.owner, after=event_id)
        assert [e["id"] for e in rest] == ids[position + 1 :], event_id
    # the anchor event sits between the entries logged before and after it was recorded
    anchor = ids.index(market.orders["anchor"])
    tree_size = int(ids[anchor].removeprefix("anchor:"))
    assert int(ids[anchor - 1]) < tree_size <= int(ids[anchor + 1])
    # a cursor from someone else's view is a cursor like any other
    a1_placed = next(e["id"] for e in everything if e["type"] == "order.placed")
    rest, _ = whole_feed(market.ex, market.buyer_a, after=a1_placed)
    assert ("order.placed", "A1") not in _story(rest, market)
    assert last is not None


def test_a_page_moves_past_events_that_are_not_yours(market: Market) -> None:
    # B's events are between A's; pages of other buyers' entries still move the cursor
    response = market.ex.http(market.buyer_a).get("/events", params={"limit": 1})
    first = response.json()
    assert [e["type"] for e in first["events"]] == ["order.placed"]
    events, _ = whole_feed(market.ex, market.other_provider)
    assert [e["type"] for e in events] == ["certificate.issued", "anchor.final"]
    response = market.ex.http(market.other_provider).get(
        "/events", params={"limit": 1, "after": events[0]["id"]}
    )
    page = response.json()
    assert page["events"][0]["type"] == "anchor.final"
    after = market.ex.http(market.other_provider).get("/events", params={"after": page["next"]})
    tail = after.json()
    assert tail["events"] == []
    owners, _ = whole_feed(market.ex, market.owner)
    [a2] = [e for e in owners if e["order_id"] == market.orders["A2"]]
    assert int(tail["next"]) >= int(a2["id"])  # examined past A2's order, not shown


def test_type_filter(market: Market) -> None:
    events, _ = whole_feed(market.ex, market.owner, type=["order.refunded", "settlement.paid"])
    assert _story(events, market) == [("settlement.paid", "A1"), ("order.refunded", "B1")]
    response = market.ex.http(market.owner).get("/events", params={"type": "order.paid"})
    error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("after", "why"),
    [("abc", "malformed"), ("-1", "malformed"), ("01", "malformed"), ("anchor:999999", "unknown")],
)
def test_bad_cursors_are_refused(market: Market, after: str, why: str) -> None:
    response = market.ex.http(market.buyer_a).get("/events", params={"after": after})
    error(response, 400, "invalid_cursor")


def test_a_cursor_beyond_the_log_is_refused(market: Market) -> None:
    client = market.ex.http(market.buyer_a)
    beyond = str(market.log_size() + 10)
    error(client.get("/events", params={"after": beyond}), 400, "invalid_cursor")
    error(client.get("/events", params={"limit": 0}), 422, "invalid_request")
    error(market.ex.http().get("/events"), 401, "unauthenticated")


# ---------------------------------------------------------------------- SSE


def _read_events(lines: Iterator[str], count: int) -> list[tuple[str | None, str, dict[str, Any]]]:
    parser = SSEParser()
    found = []
    for line in lines:
        message = parser.feed(line)
        if message is not None:
            found.append((message.id, message.event, json.loads(message.data)))
            if len(found) == count:
                break
    return found


def test_sse_resumes_after_last_event_id_and_delivers_live_events(market: Market) -> None:
    ex = market.ex
    everything, _ = whole_feed(ex, market.buyer_a)
    client = ex.http(market.buyer_a)
    headers = {"Accept": "text/event-stream"}
    with client.stream("GET", "/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        got = _read_events(lines, len(everything))
        assert [(i, t) for i, t, _ in got] == [(e["id"], e["type"]) for e in everything]
        assert [body for *_, body in got] == everything
        # a new order of A's arrives on the open stream; B's does not
        market.order(market.buyer_b, "B2")
        market.order(market.buyer_a, "A3")
        [(event_id, event_type, body)] = _read_events(lines, 1)
        assert (event_type, body["order_id"]) == ("order.placed", market.orders["A3"])
    # resume after the second event: the rest, the live one included
    resume = {**headers, "Last-Event-ID": everything[1]["id"]}
    with client.stream("GET", "/events", headers=resume, timeout=30) as response:
        again = _read_events(response.iter_lines(), len(everything) - 1)
    assert [i for i, *_ in again] == [e["id"] for e in everything[2:]] + [event_id]
    wait_for(lambda: ex.app.state.event_streams.open == 0, "the streams to end")


def test_sse_refusals_are_json(market: Market) -> None:
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "nope"}
    error(market.ex.http(market.buyer_a).get("/events", headers=headers), 400, "invalid_cursor")
    error(market.ex.http().get("/events", headers=headers), 401, "unauthenticated")


def test_a_stream_ends_when_its_client_goes_away(market: Market) -> None:
    ex = market.ex
    headers = {"Accept": "text/event-stream"}
    with (
        httpx.Client(base_url=ex.url, auth=ex.http(market.buyer_a).auth) as client,
        client.stream("GET", "/events", headers=headers, timeout=30) as response,
    ):
        assert _read_events(response.iter_lines(), 1)
        assert ex.app.state.event_streams.open >= 1
    wait_for(lambda: ex.app.state.event_streams.open == 0, "the server to end the stream")
