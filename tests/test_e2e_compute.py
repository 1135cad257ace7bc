"""Computations end to end: a real exchange (uvicorn + SQLite), the provider agent as
its own process (``shancheng provider agent``), buyers asking with the SDK's
``query`` and the CLI's ``buyer query``.

A buyer gets a correct aggregate (exact without privacy, compared with DuckDB run
directly on the file; within the noise with privacy) and never a row: ``SELECT *``
is refused, a narrow WHERE that isolates one row gets no group (k), differencing two
queries that differ by one row meets noise and then the budget, a query that runs
out of time is refused with its query given back, a refunded order takes no query,
and an agent killed mid-computation answers exactly once after a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from agent.answer import Answerer, EngineCache
from agent.compute import ComputeLimits
from agent.deliver import Dataset
from agent.state import AgentState
from clients.datasets import describe_file
from clients.sdk import APIError, ExchangeClient, QueryRefusedError
from exchange.app import create_app
from exchange.books import assert_books_balance
from exchange.log.testing import isolated_database
from exchange.settings import Settings
from ledger.computation.offer import ComputationOffer
from ledger.sm2 import SM2PrivateKey

REPO = Path(__file__).resolve().parent.parent
DISTRICTS = ("渝中区", "江北区", "南岸区", "沙坪坝区", "九龙坡区", "北碚区")
ROWS = 1_200
K = 5
DECLARATIONS = {
    "classification": "一般",
    "personal_information": False,
    "source_legality": "Measured by the provider's own stations.",
    "permitted_purposes": ["research"],
}
AVERAGES = (
    "SELECT district, month, AVG(temperature_c) AS avg_t, COUNT(*) AS n FROM weather "
    "GROUP BY district, month ORDER BY district, month"
)


def write_weather(path: Path) -> Path:
    """Hourly-ish readings: 6 districts × 12 months, deterministic temperatures."""
    lines = ["station_id,district,month,temperature_c"]
    for i in range(ROWS):
        district = DISTRICTS[i % len(DISTRICTS)]
        month = 1 + (i // len(DISTRICTS)) % 12
        temperature = round(5 + 2.5 * month - (i % 7) * 0.3 + (i % 13) * 0.1, 1)
        lines.append(f"S{i:05d},{district},{month},{temperature}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def offer(*, private: bool) -> ComputationOffer:
    return ComputationOffer.from_dict(
        {
            "version": 1,
            "table": "weather",
            "columns": [
                {"name": "station_id", "control": ["never"], "aggregates": []},
                {"name": "district", "control": ["filter", "group_by"], "aggregates": []},
                {"name": "month", "control": ["filter", "group_by"], "aggregates": []},
                {
                    "name": "temperature_c",
                    "control": ["aggregate", "filter"],
                    "aggregates": ["avg", "count", "sum"] if private else ["avg", "count", "max"],
                },
            ],
            "min_group_size": K,
            "privacy": {
                "mechanism": "laplace",
                "epsilon_per_query": "0.5",
                "epsilon_budget": "1",
                "bounds": {"temperature_c": ["-10", "45"]},
            }
            if private
            else None,
            "price": {"unit": "query", "fen": 200},
        }
    )


@dataclass
class World:
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

    def listing(self, computation: ComputationOffer) -> str:
        provider = self.client(self.provider_key)
        fields = provider.listing_from_file(
            self.data,
            computation=computation,
            title="山城 temperatures",
            description="",
            category="environment",
            tags=[],
            providers=[{"key_id": provider.key_id, "share_bps": 10_000}],
            update_frequency="once",
            licence="Shancheng standard data licence v1",
            usage_terms="Research only.",
            pricing={"model": "fixed", "price": 9_900},
            declarations=DECLARATIONS,
        )
        listing = provider.create_listing(fields)
        provider.submit_listing(listing.id)
        self.operator.review_listing(listing.id)
        self.operator.publish_listing(listing.id)
        return listing.id

    def buyer(self, listing_id: str, queries: int = 5) -> tuple[ExchangeClient, str]:
        """A funded buyer and its paid computation order of ``queries`` queries."""
        key = SM2PrivateKey.generate()
        buyer = self.client(key)
        buyer.register("买家", "buyer")
        self.operator.deposit(buyer.key_id or "", 1_000_000, "bank transfer")
        order = buyer.place_order(buyer.quote(listing_id, computation=True, queries=queries))
        return buyer, order.id

    def key_file(self, key: SM2PrivateKey, name: str) -> Path:
        path = self.tmp / f"{name}.pem"
        path.write_bytes(key.to_pem())
        return path

    def start_agent(self, state: Path, *listings: str, time_limit: float = 10.0) -> Any:
        command = [sys.executable, "-m", "exchange.cli", "provider", "agent"]
        command += ["--exchange-url", self.url]
        command += ["--key-file", str(self.key_file(self.provider_key, "provider"))]
        command += ["--state-dir", str(state), "--query-time-limit", str(time_limit)]
        for listing in listings:
            command += ["--dataset", f"{listing}={self.data}"]
        log = open(self.tmp / f"agent-{len(self.agents)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.agents.append(process)
        return process


@pytest.fixture(scope="module")
def world(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("compute")
    operator = SM2PrivateKey.generate()
    with isolated_database(None, tmp) as db:
        app = create_app(
            Settings(
                data_dir=tmp / "data",
                database_url=db.url,
                sequencer_interval=0.2,
                operator_public_keys=[operator.public_key().to_pem().decode()],
            )
        )
        with live_server(app) as url:
            provider_key = SM2PrivateKey.generate()
            world = World(url, tmp, ExchangeClient(url, key=operator), provider_key,
                          write_weather(tmp / "weather.csv"))  # fmt: skip
            world.clients.append(world.operator)
            world.client(provider_key).register("重庆气象数据", "provider")
            world.operator.approve_participant(provider_key.key_id())
            try:
                yield world
                # after the module's stories: the books replay the log and reconcile
                assert_books_balance(app.state.engine)
            finally:
                for process in world.agents:
                    stop(process)
                for client in world.clients:
                    client.close()


def stop(process: Any) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def exact(world: World) -> str:
    """A listing offering exact aggregates (no noise), served by a running agent."""
    listing = world.listing(offer(private=False))
    world.start_agent(world.tmp / "exact-state", listing)
    return listing


def duckdb_on_file(world: World, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE weather AS SELECT * FROM read_csv(?)", [str(world.data)])
        return con.execute(sql).fetchall()
    finally:
        con.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# ----------------------------------------------------------------------------- answers


def test_an_exact_aggregate_is_what_duckdb_says_on_the_file(world: World, exact: str) -> None:
    buyer, order_id = world.buyer(exact)
    answer = buyer.query(exact, AVERAGES)  # the listing id: the buyer's one order on it

    expected = duckdb_on_file(world, AVERAGES)
    assert answer.columns == ("district", "month", "avg_t", "n")
    assert len(answer.rows) == len(expected) == len(DISTRICTS) * 12
    for got, want in zip(answer.rows, expected, strict=True):
        assert (got[0], got[1], got[3]) == (want[0], want[1], want[3])
        assert float(str(got[2])) == pytest.approx(want[2], abs=1e-9)
    assert answer.epsilon_spent == 0 and answer.rows_scanned == ROWS
    assert answer.order_id == order_id
    assert answer.provider == world.provider_key.key_id()
    order = buyer.order(order_id)
    assert order.state == "delivered"  # the first answer delivers the order


def test_raw_rows_are_refused_and_cost_nothing(world: World, exact: str) -> None:
    buyer, order_id = world.buyer(exact, queries=2)
    for sql, reason in (
        ("SELECT * FROM weather", "returns_rows"),
        ("SELECT station_id, COUNT(*) FROM weather GROUP BY station_id", "hidden_column"),
        ("SELECT temperature_c FROM weather", "returns_rows"),
    ):
        with pytest.raises(QueryRefusedError) as refused:
            buyer.query(order_id, sql)
        assert refused.value.reason == reason
        assert refused.value.computation_id is None  # refused before anything was logged
    assert buyer.computations(order_id).items == ()
    assert buyer.order(order_id).state == "placed"


def test_a_narrow_where_isolating_one_row_gets_no_group(world: World, exact: str) -> None:
    buyer, order_id = world.buyer(exact)
    where = " WHERE district = '江北区' AND month = 2 AND temperature_c > 10.6"
    narrow = "SELECT district, MAX(temperature_c) AS t FROM weather" + where + " GROUP BY 1"  # noqa: S608
    [[isolated]] = duckdb_on_file(world, "SELECT COUNT(*) FROM weather" + where)  # noqa: S608
    assert isolated == 1  # the WHERE isolates one row (station S00007)
    answer = buyer.query(order_id, narrow)
    assert answer.rows == ()  # suppressed, and not even said to be
    month = "SELECT COUNT(*) AS n FROM weather WHERE month = 2"
    assert buyer.query(order_id, month).rows == tuple(duckdb_on_file(world, month))


def test_differencing_meets_noise_then_the_budget(world: World) -> None:
    listing = world.listing(offer(private=True))
    world.start_agent(world.tmp / "private-state", listing)
    buyer, order_id = world.buyer(listing)
    everyone = "SELECT SUM(temperature_c) AS s FROM weather WHERE district = '渝中区'"
    all_but_one = everyone + " AND temperature_c <> 6.0"  # one row of 渝中区 reads 6.0
    [[exact_all]] = duckdb_on_file(world, everyone)
    [[exact_rest]] = duckdb_on_file(world, all_but_one)
    assert exact_all - exact_rest == pytest.approx(6.0)

    first = buyer.query(order_id, everyone)
    second = buyer.query(order_id, all_but_one)
    difference = float(str(first.rows[0][0])) - float(str(second.rows[0][0]))
    assert difference != pytest.approx(exact_all - exact_rest, abs=1e-6)  # noise, not the row
    assert first.epsilon_spent == second.epsilon_spent == 1 / 2
    with pytest.raises(QueryRefusedError) as refused:  # ε budget 1 = two queries
        buyer.query(order_id, everyone)
    assert refused.value.reason == "budget_exhausted"
    assert len(buyer.computations(order_id).items) == 2


# ----------------------------------------------------------------------------- refusals


def test_a_query_out_of_time_is_refused_and_given_back(world: World) -> None:
    listing = world.listing(offer(private=False))
    world.start_agent(world.tmp / "slow-state", listing, time_limit=0.001)
    buyer, order_id = world.buyer(listing, queries=1)
    before = buyer.account()
    with pytest.raises(QueryRefusedError) as refused:
        buyer.query(order_id, AVERAGES)
    assert refused.value.reason == "timeout"
    order = buyer.order(order_id)
    assert order.state == "placed"  # not delivered: nothing was answered, nothing paid out
    assert order.escrow == order.amount
    assert [c.state for c in buyer.computations(order_id).items] == ["refused"]
    after = buyer.account()
    assert (after.available, after.held) == (before.available, before.held)
    # the one query bought came back: it may be asked again (and times out again)
    with pytest.raises(QueryRefusedError) as again:
        buyer.query(order_id, AVERAGES)
    assert again.value.reason == "timeout"


def test_a_refunded_order_takes_no_query(world: World, exact: str) -> None:
    buyer, order_id = world.buyer(exact)
    provider = world.client(world.provider_key)
    provider.revoke(order_id, "testing a closed order")
    with pytest.raises(APIError) as closed:
        buyer.query(order_id, AVERAGES)
    assert closed.value.code == "order_closed"
    assert buyer.computations(order_id).items == ()
    stranger, _ = world.buyer(exact)
    with pytest.raises(ValueError, match="no open computation order"):
        stranger.query(world.listing(offer(private=False)), AVERAGES)
    with pytest.raises(APIError) as other:
        stranger.request_computation(order_id, AVERAGES)  # someone else's order
    assert other.value.code == "order_not_found"


# ----------------------------------------------------------------------------- crashes


def test_an_agent_killed_mid_computation_answers_once_after_restart(world: World) -> None:
    listing = world.listing(offer(private=True))
    buyer, order_id = world.buyer(listing)
    asked = buyer.request_computation(order_id, AVERAGES.replace(", COUNT(*) AS n", ""))
    # what an agent killed after uploading, before answering, leaves behind
    state = world.tmp / "killed-state"
    described = describe_file(world.data, sample_rows=0)
    dataset = Dataset(listing, 1, world.data, "csv", described.sm3, ROWS, described.row_root, None)
    provider = world.client(world.provider_key)
    engines = EngineCache(ComputeLimits())
    answerer = Answerer(provider, AgentState(state), {listing: dataset}, engines, print)
    computation = provider.computation(asked.id)
    sealed = answerer.upload(computation.id, answerer.run(computation))
    engines.close()
    assert buyer.computation(asked.id).state == "pending"

    agent = world.start_agent(state, listing)
    answer = buyer.query_answer(asked.id, timeout=90)
    assert answer.result_sm3 == sealed["completed"]["result_sm3"]  # the sealed answer, not a rerun
    assert [c.id for c in buyer.computations(order_id).items] == [asked.id]
    events = buyer.events(types=["computation.completed"], limit=1000).events
    assert sum(1 for e in events if e.order_id == order_id) == 1

    more = buyer.request_computation(order_id, "SELECT COUNT(*) AS n FROM weather")
    time.sleep(0.3)
    os.kill(agent.pid, signal.SIGKILL)  # somewhere around the answer (any moment will do)
    agent.wait()
    world.start_agent(state, listing)
    buyer.query_answer(more.id, timeout=90)
    events = buyer.events(types=["computation.completed"], limit=1000).events
    assert sum(1 for e in events if e.order_id == order_id) == 2


# ----------------------------------------------------------------------------- the CLI


def shancheng(world: World, key: SM2PrivateKey, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}
    command = [sys.executable, "-m", "exchange.cli", *args]
    command += ["--exchange-url", world.url, "--key-file", str(world.key_file(key, "cli"))]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=clean, timeout=120, check=False
    )


def test_buyer_query_prints_a_table_json_and_a_one_line_refusal(world: World, exact: str) -> None:
    buyer, order_id = world.buyer(exact)
    assert buyer.key is not None
    sql = "SELECT district, COUNT(*) AS n FROM weather GROUP BY district ORDER BY district"

    table = shancheng(world, buyer.key, "buyer", "query", order_id, sql)
    assert table.returncode == 0, table.stderr
    for district in DISTRICTS:
        assert district in table.stdout
    assert "signed by provider" in table.stdout

    as_json = shancheng(world, buyer.key, "buyer", "query", exact, sql, "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["columns"] == ["district", "n"]
    assert sorted(answer["rows"]) == sorted([d, ROWS // len(DISTRICTS)] for d in DISTRICTS)
    assert answer["epsilon_spent"] == "0" and answer["rows_scanned"] == ROWS

    refused = shancheng(world, buyer.key, "buyer", "query", order_id, "SELECT * FROM weather")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip() == "error: query_refused: returns_rows"
