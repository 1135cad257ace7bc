"""The SDK's workflow reads (``listings``, ``order_records``, ``operator_queue``) and a
pending receipt's ``retry_after``, sync and async twins over ``httpx.MockTransport``:
what each sends, how each answer is parsed (malformed answers refused naming the
field), and ``wait_for_receipt(interval=None)`` asking again when the exchange says.
The real exchange answers the same calls in tests/clients/test_cli_workflows.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clients.sdk import (
    AsyncExchangeClient,
    ExchangeClient,
    MissingKeyError,
    ReceiptPendingError,
    ResponseFormatError,
)
from ledger.sm2 import SM2PrivateKey

KEY = SM2PrivateKey.generate()
ORDER = "0f0e0d0c-0b0a-4909-8807-060504030201"
HEX = "ab" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def record(index: int, state: str, **anchor: Any) -> dict[str, Any]:
    return {
        "index": index,
        "type": "order.placed",
        "actor": HEX,
        "timestamp": 1_700_000_000_000,
        "leaf_hash": HEX,
        "anchor": {
            "state": state,
            "tree_size": anchor.get("tree_size"),
            "chain_id": anchor.get("chain_id"),
            "tx_hash": anchor.get("tx_hash"),
            "block_number": anchor.get("block_number"),
        },
    }


RECORDS = {
    "order_id": ORDER,
    "items": [
        record(3, "final", tree_size=8, chain_id=31337, tx_hash="0x" + "11" * 32, block_number=9),
        record(5, "pending"),
    ],
}
QUEUE = {"listings": [], "participants": [], "more_listings": True, "more_participants": False}


def both(handler: Handler, key: SM2PrivateKey | None = KEY) -> list[Any]:
    """A sync and an async client on ``handler``; the async one's calls are run to
    completion by :func:`call`."""
    transport = httpx.MockTransport(handler)
    return [
        ExchangeClient("http://exchange.test", key=key, transport=transport),
        AsyncExchangeClient("http://exchange.test", key=key, transport=transport),
    ]


def call(client: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    result = getattr(client, name)(*args, **kwargs)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    return result


def test_order_records_parse_and_are_signed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RECORDS)

    for client in both(handler):
        got = call(client, "order_records", ORDER)
        assert [(r.index, r.anchor_state, r.anchored) for r in got.items] == [
            (3, "final", True),
            (5, "pending", False),
        ]
        assert got.items[0].block_number == 9 and got.items[1].tx_hash is None
    assert [r.url.path for r in seen] == [f"/orders/{ORDER}/records"] * 2
    assert all("signature" in r.headers for r in seen)


@pytest.mark.parametrize(
    ("desc", "change", "path"),
    [
        ("unknown state", lambda d: d["items"][0]["anchor"].update(state="mined"), "state"),
        ("state missing", lambda d: d["items"][0]["anchor"].pop("state"), "state"),
        ("index negative", lambda d: d["items"][0].update(index=-1), "index"),
        ("actor not hex", lambda d: d["items"][0].update(actor="me"), "actor"),
        ("no anchor", lambda d: d["items"][0].pop("anchor"), "anchor"),
        ("items not a list", lambda d: d.update(items={}), "items"),
    ],
)
def test_malformed_order_records_are_refused(
    desc: str, change: Callable[[dict[str, Any]], None], path: str
) -> None:
    data = json.loads(json.dumps(RECORDS))
    change(data)
    for client in both(lambda _r: httpx.Response(200, json=data)):
        with pytest.raises(ResponseFormatError) as caught:
            call(client, "order_records", ORDER)
        assert path in str(caught.value), desc


def test_listings_sends_provider_and_state() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [], "next_offset": None})

    for client in both(handler):
        page = call(client, "listings", provider="me", state="rejected", limit=5, offset=10)
        assert page.items == () and page.next_offset is None
    for request in seen:
        assert dict(request.url.params) == {
            "provider": KEY.key_id(),
            "state": "rejected",
            "limit": "5",
            "offset": "10",
        }
        assert "signature" in request.headers
    for client in both(handler):
        with pytest.raises(ValueError, match="state is one of"):
            call(client, "listings", state="sold")
    for client in both(handler, key=None):
        with pytest.raises(MissingKeyError):
            call(client, "listings", provider="me")
        call(client, "listings", state="published")  # anonymous: public listings, unsigned
    assert "signature" not in seen[-1].headers


def test_operator_queue_parses() -> None:
    for client in both(lambda _r: httpx.Response(200, json=QUEUE)):
        queue = call(client, "operator_queue", limit=3)
        assert queue.more_listings is True and queue.participants == ()
    bad = {**QUEUE, "more_listings": "yes"}
    for client in both(lambda _r: httpx.Response(200, json=bad)):
        with pytest.raises(ResponseFormatError, match="more_listings"):
            call(client, "operator_queue")


def pending(retry_after: str | None, body_retry: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"code": "receipt_pending", "message": "not yet"}
    if body_retry is not None:
        body["retry_after"] = body_retry
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(409, json=body, headers=headers)


@pytest.mark.parametrize(
    ("desc", "header", "body", "expected"),
    [
        ("header", "7", None, 7),
        ("body only", None, 4, 4),
        ("header wins", "3", 9, 3),
        ("an HTTP date", "Wed, 21 Oct 2015 07:28:00 GMT", None, None),
        ("negative", "-5", None, None),
        ("absurd", "99999999", None, None),
        ("none", None, None, None),
        ("body not a number", None, "soon", None),
    ],
)
def test_receipt_pending_carries_retry_after(
    desc: str, header: str | None, body: Any, expected: int | None
) -> None:
    for client in both(lambda _r: pending(header, body)):
        with pytest.raises(ReceiptPendingError) as caught:
            call(client, "receipt", 4)
        assert caught.value.retry_after == expected, desc


def test_wait_for_receipt_follows_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``interval=None`` the client sleeps what the exchange says (never past the
    deadline), and gives up with the last ReceiptPendingError at the deadline."""
    slept: list[float] = []
    monkeypatch.setattr("clients.sdk.client.time.sleep", slept.append)
    clock = iter(range(0, 1000, 1))
    monkeypatch.setattr("clients.sdk.client.time.monotonic", lambda: float(next(clock)))
    client = ExchangeClient(
        "http://exchange.test",
        transport=httpx.MockTransport(lambda _r: pending("30")),
    )
    with pytest.raises(ReceiptPendingError):
        client.wait_for_receipt(4, timeout=10, interval=None)
    assert slept and slept[0] == 9.0  # 30 s asked, 9 s left before the deadline
    assert all(0 <= s <= 30 for s in slept)

    slept.clear()
    client = ExchangeClient(
        "http://exchange.test", transport=httpx.MockTransport(lambda _r: pending("2"))
    )
    with pytest.raises(ReceiptPendingError):
        client.wait_for_receipt(4, timeout=100, interval=None)
    assert set(slept[:-1]) == {2.0}  # what the exchange said, each time
