"""The explorer's tests' world: a real exchange (uvicorn, SQLite file, anvil) with a
small story, so that every page has something to show.

A provider (approved) and a co-provider publish a listing of Chongqing bus-stop
ridership in exchange custody at a fixed price, and one in provider custody with a
computation offer; a third stays a draft (never shown). The operator credits the
buyer, who quotes and orders the first listing, receives it and accepts it (the
exchange settles: a record signed by its log key); the exchange's sequencer and
anchoring worker integrate and anchor the log on the devnet, and the world waits
until the order's receipt is out and the latest anchor is final.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from clients.datasets import describe_file
from clients.sdk import ExchangeClient
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.app import create_app
from exchange.local_exchange import with_operator
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey
from tools.openapi_examples.story import (
    COMPUTATION_OFFER,
    LISTING_TERMS,
    STOPS,
    write_ridership,
)

PROVIDER_NAME = "重庆交通数据科技有限公司"
CO_PROVIDER_NAME = "两江新区大数据中心"
BUYER_NAME = "渝新物流研究院"
FIXED_TITLE = "重庆主城区公交站点日客流 2025"
COMPUTATION_TITLE = "重庆主城区公交客流 · 可算不可见 (computation only)"
DRAFT_TITLE = "尚未提交的草稿 draft never submitted"
PRICE_FEN = 60_000


@dataclass(frozen=True)
class World:
    app: Any
    url: str
    rpc_url: str
    registry: str
    provider: str
    co_provider: str
    buyer: str
    fixed_listing: str
    computation_listing: str
    draft_listing: str
    order_id: str
    order_index: int
    """Log index of the buyer's ``order.placed`` record (anchored: its receipt is out)."""
    tree_size: int
    """The latest checkpoint's size when the world was ready."""


def _wait(what: str, ready: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


@contextmanager
def explorer_world(
    tmp_path: Path, devnet: Devnet, live_server: Any, **overrides: Any
) -> Iterator[World]:
    """Serve the story's exchange; yield its :class:`World` once its log is anchored."""
    deployment, _ = ensure_registry(devnet.rpc_url, tmp_path / "deployment.json")
    operator = SM2PrivateKey.generate()
    settings = with_operator(
        Settings(
            data_dir=tmp_path / "var",
            rpc_url=devnet.rpc_url,
            registry_address=deployment.registry_address,
            sequencer_interval=0.05,
            anchor_interval_s=0.0,
            anchor_size_threshold=1,
            anchor_confirmations=1,
            anchor_poll_s=0.05,
            **overrides,
        ),
        operator,
    )
    keys = {who: SM2PrivateKey.generate() for who in ("provider", "co", "buyer")}
    app = create_app(settings)
    with live_server(app) as url:
        clients = {who: ExchangeClient(url, key=key) for who, key in keys.items()}
        admin = ExchangeClient(url, key=operator)
        try:
            world = _play(url, tmp_path, devnet, deployment.registry_address, clients, admin)
            yield replace(world, app=app)
        finally:
            for client in (*clients.values(), admin):
                client.close()


def _play(
    url: str,
    work: Path,
    devnet: Devnet,
    registry: str,
    clients: dict[str, ExchangeClient],
    admin: ExchangeClient,
) -> World:
    provider, co, buyer = clients["provider"], clients["co"], clients["buyer"]
    provider_id = provider.register(PROVIDER_NAME, "provider").key_id
    co_id = co.register(CO_PROVIDER_NAME, "provider").key_id
    buyer_id = buyer.register(BUYER_NAME, "buyer").key_id
    admin.approve_participant(provider_id)
    admin.approve_participant(co_id)

    csv = write_ridership(work / "ridership.csv", range(1, 9), STOPS)
    described = describe_file(csv, sample_rows=3)
    fields = {
        **LISTING_TERMS,
        **described.to_listing_fields(),
        "custody": "exchange",
        "pricing": {"model": "fixed", "price": PRICE_FEN},
        "providers": [
            {"key_id": provider_id, "share_bps": 7_000},
            {"key_id": co_id, "share_bps": 3_000},
        ],
    }

    def publish(extra: dict[str, Any]) -> str:
        listing_id = provider.create_listing({**fields, **extra}).id
        provider.submit_listing(listing_id)
        admin.review_listing(listing_id)
        admin.publish_listing(listing_id)
        return listing_id

    fixed = publish({"title": FIXED_TITLE})
    provider.upload_content(fixed, 1, csv)
    computation = publish(
        {
            "title": COMPUTATION_TITLE,
            "custody": "provider",
            "row_root": described.row_root,
            "computation": COMPUTATION_OFFER,
            "tags": ["公交", "可算不可见", "computation"],
        }
    )
    draft = provider.create_listing({**fields, "title": DRAFT_TITLE}).id

    admin.deposit(buyer_id, 200_000, "中国银行转账 流水号 2026120700001", idempotency_key="d-1")
    order = buyer.place_order(buyer.quote(fixed), idempotency_key="o-1")
    assert order.log is not None
    index = order.log.index
    buyer.request_delivery(order.id)
    settled = buyer.accept(order.id, idempotency_key="a-1")  # the exchange signs the settlement
    assert settled.settlement is not None

    def receipt_out() -> bool:
        return httpx.get(f"{url}/receipts/{index}").status_code == 200

    _wait(f"the receipt of entry {index}", receipt_out)

    def all_final() -> int:
        size = int(httpx.get(f"{url}/log/checkpoint").json()["tree_size"])
        anchors = httpx.get(f"{url}/log/anchors").json()
        finals = {a["tree_size"] for a in anchors if a["state"] == "final"}
        pending = [a for a in anchors if a["state"] not in ("final", "superseded")]
        return size if size in finals and not pending else 0

    tree_size = _wait("the latest checkpoint's final anchor", all_final)
    return World(
        app=None,
        url=url,
        rpc_url=devnet.rpc_url,
        registry=registry,
        provider=provider_id,
        co_provider=co_id,
        buyer=buyer_id,
        fixed_listing=fixed,
        computation_listing=computation,
        draft_listing=draft,
        order_id=order.id,
        order_index=index,
        tree_size=tree_size,
    )
