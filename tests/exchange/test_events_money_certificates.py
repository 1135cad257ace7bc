"""Withdrawal and certificate events on a real uvicorn, SQLite and PostgreSQL: a
participant sees its own withdrawals and not another's (nor the platform's fee
withdrawals), the providers and holders of a certificate (and a transfer's
receiver, even when refused) see its records, an unrelated participant none of
them, operators all; a page reads their parties in a bounded number of queries;
the ``types`` filter, the SSE stream and a webhook carry them like any other event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from test_auth_support import running_exchange
from test_certificates import act, number_of
from test_events_support import FAST_EVENTS, Market, make_market, wait_for, whole_feed
from test_orders import BACKENDS, deposit
from test_webhook_receiver import Receiver
from test_withdrawals import decide, request_body, requested, withdraw

from clients.sdk._sse import SSEParser
from exchange.events.cursor import START
from exchange.events.feed import read_page
from exchange.events.visibility import Viewer
from ledger.sm2 import SM2PrivateKey

MONEY_AND_CERTIFICATES = ("withdrawal.", "certificate.")


@pytest.fixture(scope="module", params=BACKENDS)
def market(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Market]:
    """The platform's fee withdrawal (of A's settled order) rejected; A's withdrawal
    paid, B's rejected; the co-provider offers B a share of the listing's
    certificate, which an operator rejects."""
    tmp: Path = tmp_path_factory.mktemp("events-money")
    with running_exchange(
        live_server, tmp, request.param, platform_fee_bp=500, **FAST_EVENTS
    ) as ex:
        m = make_market(ex)
        m.accept_after_delivery(m.buyer_a, m.order(m.buyer_a, "A1"))
        fee = ex.http(ex.operator).get("/accounts/platform").json()["account"]["available"]
        response = withdraw(ex, ex.operator, request_body(ex.operator, fee, account="platform"))
        assert response.status_code == 201, response.text
        m.orders["fee"] = response.json()["withdrawal"]["id"]
        assert decide(ex, m.orders["fee"], "rejected").status_code == 200
        for buyer in (m.buyer_a, m.buyer_b):
            assert deposit(ex, buyer, 5_000).status_code == 201
        m.orders["wA"] = requested(ex, m.buyer_a, 1_000)
        assert decide(ex, m.orders["wA"], "paid").status_code == 200
        m.orders["wB"] = requested(ex, m.buyer_b, 2_000)
        assert decide(ex, m.orders["wB"], "rejected").status_code == 200
        number = number_of(ex, m.listing_id)
        m.orders["certificate"] = number
        m.orders["other certificate"] = number_of(ex, m.other_listing_id)
        act(
            ex,
            m.co_provider,
            number,
            "certificate.transfer_offered",
            right="processing",
            share_bps=1_000,
            to=m.buyer_b.key_id(),
        )
        act(ex, ex.operator, number, "certificate.transfer_rejected", reason="no")
        yield m


def _story(m: Market, key: SM2PrivateKey, **params: Any) -> list[tuple[str, str]]:
    """(type, subject's story name) of the withdrawal and certificate events ``key``
    sees of the fixture's story (not those later tests add)."""
    names = {subject: name for name, subject in m.orders.items()}
    events, _ = whole_feed(m.ex, key, **params)
    story = [
        (e["type"], names.get(e["withdrawal_id"] or e["certificate"], "later"))
        for e in events
        if e["type"].startswith(MONEY_AND_CERTIFICATES)
    ]
    return [event for event in story if event[1] != "later"]


FEE = [("withdrawal.requested", "fee"), ("withdrawal.rejected", "fee")]
WITHDRAWAL_A = [("withdrawal.requested", "wA"), ("withdrawal.paid", "wA")]
WITHDRAWAL_B = [("withdrawal.requested", "wB"), ("withdrawal.rejected", "wB")]
ISSUED = [("certificate.issued", "certificate")]
OTHER_ISSUED = [("certificate.issued", "other certificate")]
TRANSFER = [
    ("certificate.transfer_offered", "certificate"),
    ("certificate.transfer_rejected", "certificate"),
]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("buyer_a", WITHDRAWAL_A),
        ("buyer_b", WITHDRAWAL_B + TRANSFER),  # the receiver of the refused transfer
        ("owner", ISSUED + TRANSFER),
        ("co_provider", ISSUED + TRANSFER),
        ("other_provider", OTHER_ISSUED),
        ("auditor", []),
    ],
)
def test_each_participant_sees_its_money_and_certificates(
    market: Market, who: str, expected: list[tuple[str, str]]
) -> None:
    assert _story(market, getattr(market, who)) == expected


def test_an_operator_sees_them_all(market: Market) -> None:
    expected = ISSUED + OTHER_ISSUED + FEE + WITHDRAWAL_A + WITHDRAWAL_B + TRANSFER
    assert _story(market, market.ex.operator) == expected


def test_the_events_name_what_they_are_about(market: Market) -> None:
    events, _ = whole_feed(market.ex, market.buyer_b)
    requested_b, rejected_b, offered, refused = (
        e for e in events if e["type"].startswith(MONEY_AND_CERTIFICATES)
    )
    for event in (requested_b, rejected_b):
        assert event["withdrawal_id"] == market.orders["wB"]
        assert (event["order_id"], event["listing_id"], event["certificate"]) == (None,) * 3
        assert event["record"]["record"]["payload"]["withdrawal_id"] == market.orders["wB"]
    for event in (offered, refused):
        assert event["certificate"] == market.orders["certificate"]
        assert event["listing_id"] == market.listing_id
        assert (event["order_id"], event["withdrawal_id"]) == (None, None)
    order_events = [e for e in events if e["type"].startswith("order.")]
    assert all(e["withdrawal_id"] is None and e["certificate"] is None for e in order_events)


def test_a_page_reads_its_parties_in_a_bounded_number_of_queries(market: Market) -> None:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    operator = Viewer(market.ex.operator.key_id(), operator=True)
    with market.ex.app.state.session_factory() as session:
        connection = session.connection()  # this session's statements, not the workers'
        sa_event.listen(connection, "before_cursor_execute", count)
        try:
            page = read_page(session, operator, START, limit=1000, scan=1000)
        finally:
            sa_event.remove(connection, "before_cursor_execute", count)
    types = [e.type for e in page.events]
    assert types.count("certificate.issued") == 2 and "withdrawal.rejected" in types
    assert "certificate.transfer_rejected" in types  # its receiver is read too
    # the feed's three reads (last index, entries, anchors) and at most nine for the
    # parties (orders 3, withdrawals 1, certificates 3, transfer receivers 2)
    assert len(statements) <= 3 + 9


def test_type_filter(market: Market) -> None:
    paid = [("withdrawal.paid", "wA")]
    assert _story(market, market.ex.operator, type="withdrawal.paid") == paid
    assert _story(market, market.buyer_a, type="withdrawal.paid") == paid
    assert _story(market, market.buyer_b, type="withdrawal.paid") == []
    both = ["withdrawal.paid", "certificate.transfer_rejected"]
    assert _story(market, market.buyer_b, type=both) == [TRANSFER[1]]


def test_a_new_withdrawal_arrives_on_an_open_stream(market: Market) -> None:
    ex = market.ex
    _, cursor = whole_feed(ex, market.buyer_a)
    assert cursor is not None
    headers = {"Accept": "text/event-stream", "Last-Event-ID": cursor}
    client = ex.http(market.buyer_a)
    with client.stream("GET", "/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        requested(ex, market.buyer_b, 10)  # not A's
        withdrawal_id = requested(ex, market.buyer_a, 10)
        parser = SSEParser()
        message = next(m for line in response.iter_lines() if (m := parser.feed(line)))
    assert message.event == "withdrawal.requested"
    assert json.loads(message.data)["withdrawal_id"] == withdrawal_id
    wait_for(lambda: ex.app.state.event_streams.open == 0, "the stream to end")


def test_a_webhook_delivers_a_withdrawal_event(market: Market) -> None:
    ex = market.ex
    with Receiver() as receiver:
        response = ex.http(market.buyer_a).post(
            "/webhooks", json={"url": receiver.url, "event_types": ["withdrawal.paid"]}
        )
        assert response.status_code == 201, response.text
        webhook = response.json()["webhook"]
        withdrawal_id = requested(ex, market.buyer_a, 20)
        assert decide(ex, withdrawal_id, "paid").status_code == 200
        [delivery] = wait_for(receiver.taken, "the delivery")
        assert ex.http(market.buyer_a).delete(f"/webhooks/{webhook['id']}").status_code == 200
    event = delivery.verified(ex.app.state.log_key.public_key())
    assert (event.type, event.withdrawal_id) == ("withdrawal.paid", withdrawal_id)
    assert (event.certificate, event.listing_id, event.order_id) == (None, None, None)
