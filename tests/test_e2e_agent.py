"""The provider agent as its own process (``shancheng provider agent``) against a real
exchange (uvicorn + SQLite): one buyer buys 20 of 100 rows, another the whole file;
both receive and verify. An agent killed with SIGKILL between the upload and the
delivery record, or while following the feed, delivers each order exactly once after
a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.deliver import Dataset, Deliverer
from agent.state import AgentState
from clients.datasets import describe_file
from clients.sdk import ExchangeClient, Order
from exchange.app import create_app
from exchange.books import assert_books_balance
from exchange.log.testing import isolated_database
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey

ROWS = 100
REPO = Path(__file__).resolve().parent.parent


DECLARATIONS = {
    "classification": "一般",
    "personal_information": False,
    "source_legality": "Measured by the provider's own stations.",
    "permitted_purposes": ["research"],
}


def write_csv(path: Path) -> Path:
    lines = ["hour,station,reading"] + [f"{i},站-{i % 7},{i * 0.5:.1f}" for i in range(ROWS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Story:
    url: str
    tmp: Path
    operator: ExchangeClient
    provider_key: SM2PrivateKey
    data: Path
    clients: list[ExchangeClient] = field(default_factory=list)
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, key: SM2PrivateKey) -> ExchangeClient:
        client = ExchangeClient(self.url, key=key)
        self.clients.append(client)
        return client

    @property
    def provider(self) -> ExchangeClient:
        return self.client(self.provider_key)

    def listing(self, pricing: dict[str, Any]) -> str:
        provider = self.provider
        fields = provider.listing_from_file(
            self.data,
            custody="provider",
            title="Hourly readings",
            description="",
            category="environment",
            tags=[],
            providers=[{"key_id": provider.key_id, "share_bps": 10_000}],
            update_frequency="once",
            licence="Shancheng standard data licence v1",
            usage_terms="Research only.",
            pricing=pricing,
            declarations=DECLARATIONS,
        )
        listing = provider.create_listing(fields)
        provider.submit_listing(listing.id)
        self.operator.review_listing(listing.id)
        self.operator.publish_listing(listing.id)
        return listing.id

    def buyer(self) -> ExchangeClient:
        buyer = self.client(SM2PrivateKey.generate())
        buyer.register("买家", "buyer")
        self.operator.deposit(buyer.key_id or "", 1_000_000, "bank transfer")
        return buyer

    def start_agent(self, state: Path, *listings: str) -> subprocess.Popen[bytes]:
        key_file = self.tmp / "provider.pem"
        key_file.write_bytes(self.provider_key.to_pem())
        command = [sys.executable, "-m", "exchange.cli", "provider", "agent"]
        command += ["--exchange-url", self.url, "--key-file", str(key_file)]
        command += ["--state-dir", str(state)]
        for listing in listings:
            command += ["--dataset", f"{listing}={self.data}"]
        log = open(self.tmp / f"agent-{len(self.agents)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.agents.append(process)
        return process


@contextmanager
def running_story(live_server: Any, tmp_path: Path) -> Iterator[Story]:
    operator = SM2PrivateKey.generate()
    with isolated_database(None, tmp_path) as db:
        app = create_app(
            Settings(
                data_dir=tmp_path / "data",
                database_url=db.url,
                sequencer_interval=0.2,
                operator_public_keys=[operator.public_key().to_pem().decode()],
            )
        )
        with live_server(app) as url:
            provider_key = SM2PrivateKey.generate()
            story = Story(url, tmp_path, ExchangeClient(url, key=operator), provider_key,
                          write_csv(tmp_path / "readings.csv"))  # fmt: skip
            story.clients.append(story.operator)
            story.provider.register("重庆气象数据", "provider")
            story.operator.approve_participant(provider_key.key_id())
            try:
                yield story
                # after the story: the books replay the log and reconcile (deposits −
                # paid withdrawals = Σ available + Σ held)
                assert_books_balance(app.state.engine)
            finally:
                for process in story.agents:
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        try:
                            process.wait(timeout=20)
                        except subprocess.TimeoutExpired:
                            process.kill()
                            process.wait()
                for client in story.clients:
                    client.close()


@pytest.fixture
def story(live_server: Any, tmp_path: Path) -> Iterator[Story]:
    with running_story(live_server, tmp_path) as running:
        yield running


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def delivered(client: ExchangeClient, order: Order) -> Callable[[], bool]:
    return lambda: client.order(order.id).state == "delivered"


def delivery_records(client: ExchangeClient, order_id: str) -> int:
    page = client.events(types=["order.delivered"], limit=1000)
    return sum(1 for event in page.events if event.order_id == order_id)


TIERS = {"model": "tiers", "tiers": [{"up_to_rows": None, "price_per_1000_rows": 500}]}


def test_the_agent_delivers_a_slice_and_a_whole_file_both_verified(
    story: Story, tmp_path: Path
) -> None:
    sliced = story.listing(TIERS)
    whole = story.listing({"model": "fixed", "price": 9_900})
    agent = story.start_agent(tmp_path / "state", sliced, whole)
    some, everything = story.buyer(), story.buyer()
    rows_order = some.place_order(some.quote(sliced, rows=20, row_offset=40))
    file_order = everything.place_order(everything.quote(whole))

    wait_for(delivered(some, rows_order), "the slice's delivery")
    wait_for(delivered(everything, file_order), "the whole file's delivery")
    got_rows = some.receive(rows_order.id, tmp_path / "rows.csv")
    got_file = everything.receive(file_order.id, tmp_path / "all.csv")

    assert got_rows.rows is not None and (got_rows.rows.offset, got_rows.rows.count) == (40, 20)
    lines = (tmp_path / "rows.csv").read_text("utf-8").splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(40, 60)]
    assert (tmp_path / "all.csv").read_bytes() == story.data.read_bytes()
    assert got_file.rows is None
    # the buyer takes its unspent deposit out: held, then paid by the operator
    unspent = some.account().available
    payout = some.withdraw(unspent, "中国银行 账号尾号 0042")
    assert payout.account is not None and payout.account.available == 0
    paid = story.operator.pay_withdrawal(payout.id, "BOC transfer 0042")
    assert paid.state == "paid" and some.account().held == rows_order.escrow
    assert agent.poll() is None
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0


def test_killed_between_upload_and_record_the_agent_delivers_once_after_restart(
    story: Story, tmp_path: Path
) -> None:
    listing = story.listing({"model": "fixed", "price": 9_900})
    buyer = story.buyer()
    order = buyer.place_order(buyer.quote(listing))
    state = tmp_path / "state"
    # what an agent killed right after the upload leaves: the state says "uploaded"
    described = describe_file(story.data, sample_rows=0)
    dataset = Dataset(listing, 1, story.data, "csv", described.sm3, ROWS, described.row_root, None)
    deliverer = Deliverer(story.provider, AgentState(state), {listing: dataset}, print)
    placed = story.provider.order(order.id)
    assert buyer.key is not None
    deliverer.upload(placed, deliverer.seal(placed, buyer.key.public_key()))
    assert buyer.order(order.id).state == "placed"

    story.start_agent(state, listing)
    wait_for(delivered(buyer, order), "the delivery after the restart")
    buyer.receive(order.id, tmp_path / "out.csv")
    assert delivery_records(buyer, order.id) == 1


def test_an_agent_killed_while_delivering_delivers_every_order_once_after_restart(
    story: Story, tmp_path: Path
) -> None:
    listing = story.listing(TIERS)
    state = tmp_path / "state"
    agent = story.start_agent(state, listing)
    buyers = [story.buyer() for _ in range(3)]
    orders = [
        b.place_order(b.quote(listing, rows=10, row_offset=10 * i)) for i, b in enumerate(buyers)
    ]
    time.sleep(0.5)  # somewhere in the middle of the deliveries (any moment will do)
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()

    story.start_agent(state, listing)
    for buyer, order in zip(buyers, orders, strict=True):
        wait_for(delivered(buyer, order), f"order {order.id}")
        buyer.receive(order.id, tmp_path / f"{order.id}.csv")
        assert delivery_records(buyer, order.id) == 1
