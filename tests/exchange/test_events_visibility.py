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
from exchange.events.visibility import (
    EVERYONE,
    CertificateParties,
    OrderParties,
    Parties,
    Subject,
    Viewer,
    audience_of,
)

BUYER, OTHER_BUYER, OWNER, CO, OTHER_PROVIDER, EXCHANGE, OPERATOR, AUDITOR = (
    f"{n:064x}" for n in range(1, 9)
)
ORDER = OrderParties("o-1", "l-1", BUYER, frozenset({OWNER, CO}))
CERTIFICATE = CertificateParties(
    "SC-2026-000001", "l-1", frozenset({OWNER, CO}), frozenset({OWNER})
)

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
    audience = audience_of(actor, order.parties if order else ())
    assert {name for name, viewer in VIEWERS.items() if audience.admits(viewer)} == seen_by


# (event, actor, the subject's parties) → who sees it
OTHER_CASES = [
    ("withdrawal.requested by its owner", BUYER, {BUYER}, {"buyer", "operator"}),
    ("withdrawal.paid by an operator", OPERATOR, {BUYER}, {"buyer", "operator"}),
    ("the platform's withdrawal.paid", OPERATOR, {"platform"}, {"operator"}),
    (
        "certificate.issued by the exchange",
        EXCHANGE,
        CERTIFICATE.parties,
        {"owner", "co-provider", "operator"},
    ),
    (
        "certificate.transfer_offered to a buyer",
        OWNER,
        CERTIFICATE.parties | {BUYER},
        {"owner", "co-provider", "buyer", "operator"},
    ),
]


@pytest.mark.parametrize(
    ("event", "actor", "parties", "seen_by"), OTHER_CASES, ids=[case[0] for case in OTHER_CASES]
)
def test_who_sees_a_withdrawal_or_certificate_event(
    event: str, actor: str, parties: set[str], seen_by: set[str]
) -> None:
    audience = audience_of(actor, parties)
    assert {name for name, viewer in VIEWERS.items() if audience.admits(viewer)} == seen_by


def _record(actor: str, **payload: str) -> dict[str, object]:
    return {"actor": actor, "payload": payload}


def test_what_a_record_is_about_and_who_sees_it() -> None:
    parties = Parties(
        orders={"o-1": ORDER},
        withdrawals={"w-1": BUYER, "w-fee": "platform"},
        certificates={CERTIFICATE.number: CERTIFICATE},
        receivers={"ab" * 32: OTHER_BUYER},
    )

    def seen_by(record_type: str, leaf_hash: str, record: dict[str, object]) -> set[str]:
        audience = parties.audience(Subject.of(record_type, leaf_hash, record))
        return {name for name, viewer in VIEWERS.items() if audience.admits(viewer)}

    number = CERTIFICATE.number
    paid = Subject.of("withdrawal.paid", "00" * 32, _record(OPERATOR, withdrawal_id="w-1"))
    assert (paid.withdrawal_id, paid.order_id, paid.certificate) == ("w-1", None, None)
    assert parties.listing_of(paid) is None
    assert seen_by("withdrawal.paid", "00" * 32, _record(OPERATOR, withdrawal_id="w-1")) == {
        "buyer",
        "operator",
    }
    assert seen_by("withdrawal.paid", "00" * 32, _record(OPERATOR, withdrawal_id="w-fee")) == {
        "operator"
    }
    offered = _record(OWNER, number=number, to=BUYER)
    assert parties.listing_of(Subject.of("certificate.transfer_offered", "cd" * 32, offered)) == (
        "l-1"
    )
    assert seen_by("certificate.transfer_offered", "cd" * 32, offered) == {
        "buyer",
        "owner",
        "co-provider",
        "operator",
    }
    # an operator's refusal names no receiver: the page read it from the offer
    refused = _record(OPERATOR, number=number, reason="no")
    assert seen_by("certificate.transfer_rejected", "ab" * 32, refused) == {
        "other buyer",
        "owner",
        "co-provider",
        "operator",
    }
    # a "to" in a record that is not an offer names nobody
    assert "buyer" not in seen_by(
        "certificate.changed", "ef" * 32, _record(OPERATOR, number=number, to=BUYER)
    )


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
        ("withdrawal.requested", {}, "withdrawal.requested"),
        ("withdrawal.paid", {}, "withdrawal.paid"),
        ("withdrawal.rejected", {}, "withdrawal.rejected"),
        ("certificate.issued", {}, "certificate.issued"),
        ("certificate.transfer_approved", {}, "certificate.transfer_approved"),
        ("certificate.cancelled", {}, "certificate.cancelled"),
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
    assert record_types_for(frozenset({"withdrawal.paid", "certificate.renewed"})) == (
        "certificate.renewed",
        "withdrawal.paid",
    )


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
