"""The visibility rule as a table (exchange.events.visibility), the record → event
type table (exchange.events.kinds) and event ids as cursors (exchange.events.cursor)."""

from __future__ import annotations

import pytest

from exchange.events.cursor import InvalidCursorError, Position, parse_event_id
from exchange.events.kinds import (
    ANCHOR_FINAL,
    EVENT_TYPES,
    RECORD_EVENTS,
    event_type_of,
    record_types_for,
)
from exchange.events.visibility import EVERYONE, OrderParties, Viewer, audience_of

BUYER, OTHER_BUYER, OWNER, CO, OTHER_PROVIDER, EXCHANGE, OPERATOR, AUDITOR = (
    f"{n:064x}" for n in range(1, 9)
)
ORDER = OrderParties("o-1", "l-1", BUYER, frozenset({OWNER, CO}))

VIEWERS = {
    "buyer": Viewer(BUYER),
    "other buyer": Viewer(OTHER_BUYER),
    "owner": Viewer(OWNER),
    "co-provider": Viewer(CO),
    "other provider": Viewer(OTHER_PROVIDER),
    "auditor": Viewer(AUDITOR),
    "operator": Viewer(OPERATOR, operator=True),
}

ORDER_PARTIES = {"buyer", "owner", "co-provider", "operator"}

# (event, actor, order or None) → who sees it
CASES = [
    ("order.placed by the buyer", BUYER, ORDER, ORDER_PARTIES),
    ("delivery.issued by the exchange", EXCHANGE, ORDER, ORDER_PARTIES),
    ("settlement.paid by the exchange", EXCHANGE, ORDER, ORDER_PARTIES),
    ("dispute.resolved by an operator", OPERATOR, ORDER, ORDER_PARTIES),
    ("access.revoked by the co-provider", CO, ORDER, ORDER_PARTIES),
    ("a record naming no known order", OTHER_PROVIDER, None, {"other provider", "operator"}),
]


@pytest.mark.parametrize(
    ("event", "actor", "order", "seen_by"), CASES, ids=[case[0] for case in CASES]
)
def test_who_sees_an_order_event(
    event: str, actor: str, order: OrderParties | None, seen_by: set[str]
) -> None:
    audience = audience_of(actor, order)
    assert {name for name, viewer in VIEWERS.items() if audience.admits(viewer)} == seen_by


def test_anchor_events_are_for_everyone() -> None:
    assert all(EVERYONE.admits(viewer) for viewer in VIEWERS.values())


@pytest.mark.parametrize(
    ("record_type", "payload", "event_type"),
    [
        ("order.placed", {}, "order.placed"),
        ("delivery.issued", {}, "order.delivered"),
        ("order.accepted", {}, "order.accepted"),
        ("order.auto_accepted", {}, "order.accepted"),
        ("order.disputed", {}, "order.disputed"),
        ("dispute.resolved", {"outcome": "refund"}, "order.refunded"),
        ("dispute.resolved", {"outcome": "release"}, "dispute.resolved"),
        ("settlement.paid", {}, "settlement.paid"),
        ("access.revoked", {}, "access.revoked"),
        ("deposit.credited", {}, None),
        ("listing.published", {}, None),
        ("note.added", {}, None),
    ],
)
def test_event_type_of_each_record(
    record_type: str, payload: dict[str, str], event_type: str | None
) -> None:
    assert event_type_of(record_type, payload) == event_type
    if event_type is not None:
        assert event_type in EVENT_TYPES
        assert record_type in record_types_for(frozenset({event_type}))


def test_type_filters_select_their_records() -> None:
    assert record_types_for(None) == tuple(sorted(RECORD_EVENTS))
    assert record_types_for(frozenset({"order.refunded"})) == ("dispute.resolved",)
    assert record_types_for(frozenset({ANCHOR_FINAL})) == ()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0", (0, None)), ("42", (42, None)), ("anchor:7", (None, 7))],
)
def test_event_ids(text: str, parsed: tuple[int | None, int | None]) -> None:
    assert parse_event_id(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "-1", "01", "4.2", "anchor:", "anchor:0", "anchor:-3", "Anchor:5", "1" * 41, "٣"]
)
def test_malformed_event_ids(text: str) -> None:
    with pytest.raises(InvalidCursorError):
        parse_event_id(text)


def test_positions_order_anchors_after_their_slot() -> None:
    entries = [Position(3, 0, 0), Position(4, 0, 0)]
    anchors = [Position(3, 1, 4), Position(3, 1, 2)]
    assert sorted(entries + anchors) == [
        Position(3, 0, 0),
        Position(3, 1, 2),
        Position(3, 1, 4),
        Position(4, 0, 0),
    ]
    assert [p.event_id for p in sorted(anchors)] == ["anchor:2", "anchor:4"]
