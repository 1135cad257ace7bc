"""Helpers shared by the event feed and webhook tests (no tests of its own): a
market with a co-provided listing, two buyers and orders taken through their
lifecycle; a final anchor as the anchoring worker would record it; reading the
whole feed as someone; waiting for a condition with a deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select
from test_auth_support import Exchange
from test_delivery_support import dataset, paid_order, ready_listing

from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.log.models import LogEntry
from ledger.sm2 import SM2PrivateKey

FAST_EVENTS: dict[str, Any] = {
    "events_poll_s": 0.05,
    "webhook_poll_s": 0.05,
    "webhook_backoff_base_s": 0.05,
    "webhook_backoff_cap_s": 0.3,
    "webhook_timeout_s": 5.0,
}
"""Settings that make the feed and the webhook worker react in tens of milliseconds."""


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail with
    ``what`` after ``timeout`` seconds (a deadline against hanging, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Market:
    ex: Exchange
    owner: SM2PrivateKey
    co_provider: SM2PrivateKey
    other_provider: SM2PrivateKey
    buyer_a: SM2PrivateKey
    buyer_b: SM2PrivateKey
    auditor: SM2PrivateKey
    listing_id: str
    other_listing_id: str
    orders: dict[str, str] = field(default_factory=dict)
    """Story name → order id."""

    def signed(
        self, key: SM2PrivateKey, path: str, record_type: str, payload: dict[str, Any]
    ) -> httpx.Response:
        response = self.ex.act(key, "POST", path, record_type, payload)
        assert response.status_code in (200, 201), response.text
        return response

    def order(self, buyer: SM2PrivateKey, name: str, listing_id: str | None = None) -> str:
        order_id = paid_order(self.ex, buyer, listing_id or self.listing_id)
        self.orders[name] = order_id
        return order_id

    def deliver(self, buyer: SM2PrivateKey, order_id: str) -> None:
        response = self.ex.http(buyer).post(f"/orders/{order_id}/delivery")
        assert response.status_code == 200, response.text

    def accept(self, buyer: SM2PrivateKey, order_id: str) -> None:
        self.signed(buyer, f"/orders/{order_id}/accept", "order.accepted", {"order_id": order_id})

    def dispute(self, buyer: SM2PrivateKey, order_id: str) -> None:
        payload = {"order_id": order_id, "reason": "rows missing"}
        self.signed(buyer, f"/orders/{order_id}/dispute", "order.disputed", payload)

    def refund(self, order_id: str) -> None:
        payload = {"order_id": order_id, "outcome": "refund", "note": "checked"}
        self.signed(self.ex.operator, f"/orders/{order_id}/resolve", "dispute.resolved", payload)

    def accept_after_delivery(self, buyer: SM2PrivateKey, order_id: str) -> None:
        self.deliver(buyer, order_id)
        self.accept(buyer, order_id)

    def log_size(self) -> int:
        return self.ex.log_size()


def make_market(ex: Exchange) -> Market:
    owner, co_provider, other = ex.provider("owner"), ex.provider("co"), ex.provider("other")
    data = dataset(5_000)
    listing_id = ready_listing(
        ex,
        owner,
        data,
        providers=[
            {"key_id": owner.key_id(), "share_bps": 7_000},
            {"key_id": co_provider.key_id(), "share_bps": 3_000},
        ],
    )
    other_listing_id = ready_listing(ex, other, dataset(3_000))
    return Market(
        ex=ex,
        owner=owner,
        co_provider=co_provider,
        other_provider=other,
        buyer_a=ex.register("buyer", "A"),
        buyer_b=ex.register("buyer", "B"),
        auditor=ex.register("auditor", "U"),
        listing_id=listing_id,
        other_listing_id=other_listing_id,
    )


def mark_anchor_final(ex: Exchange, tree_size: int | None = None) -> int:
    """An anchor row in state final for ``tree_size`` (default: the log's size now), as
    the anchoring worker leaves it after enough confirmations; its tree size."""
    now = time.time_ns() // 1_000_000
    with ex.app.state.session_factory() as session:
        if tree_size is None:
            tree_size = int(
                session.execute(select(func.count()).select_from(LogEntry)).scalar_one()
            )
        session.add(
            AnchorRow(
                tree_size=tree_size,
                root=bytes.fromhex(uuid.uuid4().hex * 2),
                state=AnchorState.FINAL,
                chain_id=31337,
                registry_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
                tx_hash="0x" + uuid.uuid4().hex * 2,
                block_number=tree_size + 100,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    return tree_size


def whole_feed(
    ex: Exchange, key: SM2PrivateKey, *, after: str | None = None, limit: int = 1000, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Every event ``key`` may see after ``after``, page by page; and the last cursor."""
    events: list[dict[str, Any]] = []
    cursor = after
    client = ex.http(key)
    while True:
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor is not None:
            query["after"] = cursor
        response = client.get("/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if page["next"] == cursor or (not page["events"] and page["next"] is None):
            return events, cursor
        cursor = page["next"]
