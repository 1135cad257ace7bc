"""The SDK's event feed and webhook methods against a real uvicorn, both twins:
``events`` pages, ``iter_events`` following the SSE stream across the server's
stream ends without skipping or repeating, webhooks registered, listed, their
attempts and deletion, and ``verify_webhook`` on a real delivery; the SSE parser."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.sdk import (
    APIError,
    AsyncExchangeClient,
    Event,
    ExchangeClient,
    verify_webhook,
)
from clients.sdk._sse import SSEMessage, SSEParser

# The exchange's test helpers live beside the exchange tests (as in test_sdk_support).
_EXCHANGE_TESTS = str(Path(__file__).resolve().parents[1] / "exchange")
if _EXCHANGE_TESTS not in sys.path:
    sys.path.append(_EXCHANGE_TESTS)

from test_auth_support import running_exchange  # noqa: E402
from test_events_support import (  # noqa: E402
    FAST_EVENTS,
    Market,
    make_market,
    wait_for,
    whole_feed,
)
from test_orders import deposit  # noqa: E402
from test_webhook_receiver import Receiver  # noqa: E402
from test_withdrawals import requested  # noqa: E402


@pytest.fixture
def market(live_server: Any, tmp_path: Path) -> Iterator[Market]:
    # streams last one second: iter_events must reconnect (Last-Event-ID) to go on
    with running_exchange(live_server, tmp_path, events_stream_max_s=1.0, **FAST_EVENTS) as ex:
        m = make_market(ex)
        a1 = m.order(m.buyer_a, "A1")
        m.deliver(m.buyer_a, a1)
        m.order(m.buyer_b, "B1")
        yield m


def client(m: Market, key: Any) -> ExchangeClient:
    return ExchangeClient(m.ex.url, key=key)


def test_events_pages_are_the_feed(market: Market) -> None:
    expected, _ = whole_feed(market.ex, market.owner)
    with client(market, market.owner) as sdk:
        first = sdk.events(limit=2)
        assert [e.id for e in first.events] == [e["id"] for e in expected[:2]]
        rest = sdk.events(after=first.next)
        assert [e.id for e in first.events + rest.events] == [e["id"] for e in expected]
        issued, placed = first.events
        assert (issued.type, issued.listing_id) == ("certificate.issued", market.listing_id)
        listing = market.ex.http().get(f"/listings/{market.listing_id}").json()
        assert issued.certificate == listing["certificate"]
        assert (issued.order_id, issued.withdrawal_id) == (None, None)
        assert (placed.type, placed.order_id) == ("order.placed", market.orders["A1"])
        assert placed.record is not None and placed.log_index == int(placed.id)
        placed.record.verify(market.buyer_a.public_key())
        only = sdk.events(types=["order.delivered"])
        assert [e.type for e in only.events] == ["order.delivered"]
        with pytest.raises(APIError) as refused:
            sdk.events(after="not-an-id")
        assert (refused.value.status_code, refused.value.code) == (400, "invalid_cursor")


def test_withdrawal_events_through_the_sdk(market: Market) -> None:
    assert deposit(market.ex, market.buyer_a, 500).status_code == 201
    withdrawal_id = requested(market.ex, market.buyer_a, 300)
    with client(market, market.buyer_a) as sdk:
        [event] = sdk.events(types=["withdrawal.requested"]).events
        assert (event.type, event.withdrawal_id) == ("withdrawal.requested", withdrawal_id)
        assert (event.order_id, event.listing_id, event.certificate) == (None, None, None)
        assert event.record is not None
        event.record.verify(market.buyer_a.public_key())
    with client(market, market.buyer_b) as sdk:
        assert sdk.events(types=["withdrawal.requested"]).events == ()


def test_iter_events_follows_the_stream_across_reconnections(market: Market) -> None:
    before, _ = whole_feed(market.ex, market.buyer_a)
    got: list[Event] = []
    done = threading.Event()

    def follow() -> None:
        with client(market, market.buyer_a) as sdk:
            for event in sdk.iter_events(reconnect_delay=0.05):
                got.append(event)
                if len(got) == len(before) + 4:
                    break
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    wait_for(lambda: len(got) >= len(before), "the past events")
    for name in ("A2", "A3"):  # each outlives a stream or two (they last a second)
        market.order(market.buyer_a, name)
        market.order(market.buyer_b, name + "-B")
        order_id = market.orders[name]
        wait_for(lambda: order_id in {e.order_id for e in got}, name)  # noqa: B023
        threading.Event().wait(1.2)
    market.accept_after_delivery(market.buyer_a, market.orders["A2"])
    wait_for(done.is_set, "the last events")
    ids = [e.id for e in got]
    assert len(ids) == len(set(ids))  # nothing repeated
    expected, _ = whole_feed(market.ex, market.buyer_a)
    assert ids == [e["id"] for e in expected][: len(ids)]  # nothing skipped, in order


def test_async_twin(market: Market) -> None:
    async def run() -> tuple[list[str], list[str]]:
        async with AsyncExchangeClient(market.ex.url, key=market.owner) as sdk:
            page = await sdk.events(limit=1000)
            streamed: list[str] = []
            async for event in sdk.iter_events(after=page.events[0].id, reconnect_delay=0.05):
                streamed.append(event.id)
                if len(streamed) == len(page.events) - 1:
                    break
            hook = await sdk.register_webhook("http://127.0.0.1:9/x", event_types=["anchor.final"])
            assert [w.id for w in await sdk.webhooks()] == [hook.id]
            assert await sdk.webhook_attempts(hook.id) == []
            assert (await sdk.delete_webhook(hook.id)).id == hook.id
            return [e.id for e in page.events[1:]], streamed

    expected, streamed = asyncio.run(run())
    assert streamed == expected


def test_webhooks_through_the_sdk_with_a_real_receiver(market: Market) -> None:
    with client(market, market.buyer_a) as sdk, Receiver(statuses=[502]) as receiver:
        log_key = sdk.log_key().sm2_public_key
        hook = sdk.register_webhook(receiver.url, event_types=["order.placed"])
        assert hook.signing_key_id == log_key.key_id() and hook.event_types == ("order.placed",)
        assert hook.cursor is not None and hook.delivered == 0
        market.order(market.buyer_a, "hooked")
        wait_for(lambda: receiver.taken(), "the delivery")
        [attempt_ok, attempt_502] = sdk.webhook_attempts(hook.id)
        assert (attempt_502.status, attempt_ok.status) == (502, 200)
        [listed] = sdk.webhooks()
        assert listed.delivered == 1 and listed.cursor == attempt_ok.event_id
        delivery = receiver.taken()[0]
        event = verify_webhook(
            delivery.method, delivery.url, delivery.headers, delivery.body, log_key
        )
        assert (event.type, event.order_id) == ("order.placed", market.orders["hooked"])
        assert sdk.delete_webhook(hook.id).id == hook.id
        assert sdk.webhooks() == []
        with pytest.raises(APIError) as refused:
            sdk.delete_webhook(hook.id)
        assert refused.value.code == "webhook_not_found"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["id: 7", "event: order.placed", "data: {}", ""], [SSEMessage("order.placed", "{}", "7")]),
        ([": ping", "", "data: a", "data: b", ""], [SSEMessage("message", "a\nb", None)]),
        (["id: 3", "", "data:x", ""], [SSEMessage("message", "x", "3")]),
        (["retry: 10", "unknown: 1", "event: e", ""], []),
    ],
)
def test_sse_parser(lines: list[str], expected: list[SSEMessage]) -> None:
    parser = SSEParser()
    assert [m for line in lines if (m := parser.feed(line)) is not None] == expected
