"""A buyer's computation over 1,000,000 rows, answered by the agent's engine, beside the
same query run directly in DuckDB in the same run.

Run: ``.venv/bin/python bench/query.py`` (about 30 s). Weather-shaped data (16
stations in 15 districts, hourly, about 7 years; written to Parquet by DuckDB) is
loaded once into a :class:`agent.compute.ComputeEngine` with a private offer (k = 10,
Laplace ε = 1 per query, temperature clamped to [-10, 45]) and once into a plain
DuckDB with the same thread count. Then, alternating, for a bounded number of rounds:

* ours: ``SELECT district, month(observed_at) AS month, AVG(temperature_c) AS avg_t
  FROM weather GROUP BY district, month``, through validation (the engine keeps the
  validated query and its SQL per SQL text: checked once, then looked up), execution
  (k in the same query), OpenDP noise on every group's sum and count, the canonical
  result encoding and its SM3, and the SM4-GCM / SM2 envelope to the buyer;
* new SQL: the same, but each round's SQL text differs (trailing spaces), so the
  engine validates and plans it anew instead of reusing what it kept for that text;
* direct: the same SELECT on the plain DuckDB, rows fetched.

Medians are compared. Then, end to end, against a real exchange (uvicorn in a
thread, SQLite) with the same data listed with the same offer: the buyer signs and
posts ``computation.requested`` (the exchange validates it early and reserves the
query), the agent's code (:class:`agent.answer.Answerer`, its engine loaded once
per listing version as the running agent keeps it) fetches the computation,
verifies the buyer's record, validates, runs, adds the noise, encrypts the result
to the buyer, uploads it and posts the signed ``computation.completed``; the buyer
reads it, checks the provider's signature and both SM3 digests, downloads and
decrypts it (:meth:`clients.sdk.ExchangeClient.query_answer`). The time is from
the request to the checked answer; what it leaves out is how fast a running agent
hears of the request (the event feed: one SSE message).

The last lines are ``figure <name> <value> <unit>``: ``query_vs_duckdb`` (direct
time / our time; the goal is ≥ 0.8), ``query_vs_duckdb_new_sql`` (the same with the
SQL text new each time), ``query_1m_rows_ms`` (our median time for the
engine and the envelope, no records) and ``query_end_to_end_ms`` (the median end to
end, records and HTTP included; the goal is ≤ 2,000 ms).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.answer import Answerer, EngineCache
from agent.compute import ComputeEngine, ComputeLimits
from agent.deliver import Dataset
from agent.state import AgentState
from clients.datasets import describe_file
from clients.sdk import ExchangeClient
from exchange.app import create_app
from exchange.local_exchange import serve_in_thread
from exchange.settings import Settings
from ledger import envelope
from ledger.computation.offer import ComputationOffer
from ledger.sm2 import SM2PrivateKey

ROWS = 1_000_000
ROUNDS = 21
END_TO_END_ROUNDS = 11
DECLARATIONS = {
    "classification": "一般",
    "personal_information": False,
    "source_legality": "Measured by the provider's own stations.",
    "permitted_purposes": ["research"],
}
QUERY = (
    "SELECT district, month(observed_at) AS month, AVG(temperature_c) AS avg_t "
    "FROM weather GROUP BY district, month"
)
DISTRICTS = [
    "沙坪坝区", "北碚区", "渝北区", "渝中区", "江北区", "南岸区", "九龙坡区", "巴南区",
    "大渡口区", "万州区", "涪陵区", "永川区", "合川区", "江津区", "黔江区", "北碚区",
]  # fmt: skip
OFFER = ComputationOffer.from_dict(
    {
        "version": 1,
        "table": "weather",
        "columns": [
            {"name": "station_id", "control": ["never"], "aggregates": []},
            {"name": "district", "control": ["filter", "group_by"], "aggregates": []},
            {"name": "observed_at", "control": ["filter", "group_by"], "aggregates": []},
            {"name": "temperature_c", "control": ["aggregate"], "aggregates": ["avg", "count"]},
        ],
        "min_group_size": 10,
        "privacy": {
            "mechanism": "laplace",
            "epsilon_per_query": "1",
            "epsilon_budget": "100",
            "bounds": {"temperature_c": ["-10", "45"]},
        },
        "price": {"unit": "query", "fen": 200},
    }
)


def write_weather(path: Path) -> None:
    """1M hourly rows of 16 stations: a seasonal and daily temperature cycle plus noise."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            "COPY (SELECT 'CQ' || (57511 + range % 16) AS station_id, "
            "list_extract(?, (range % 16)::INTEGER + 1) AS district, "
            "TIMESTAMPTZ '2025-01-01 00:00:00+08' + to_hours((range // 16)::BIGINT) "
            "AS observed_at, "
            "round(18.5 - 10.5 * cos(2 * pi() * ((range // 16) / 24 - 15) / 365) "
            "+ 4 * sin(2 * pi() * ((range // 16) % 24 - 9) / 24) + random() * 2.4 - 1.2, 1) "
            "AS temperature_c FROM range(?)) TO ? (FORMAT parquet)",
            [DISTRICTS, ROWS, str(path)],
        )
    finally:
        con.close()


def engine_vs_duckdb(
    data: Path, limits: ComputeLimits
) -> tuple[int, list[float], list[float], list[float]]:
    """Groups, and our times (same SQL text, new SQL text) and DuckDB's (ms) per round,
    alternating."""
    buyer = SM2PrivateKey.generate().public_key()
    engine = ComputeEngine(data, OFFER, limits=limits)
    direct = duckdb.connect(":memory:")
    direct.execute("SET threads = ?", [limits.threads])
    direct.execute("SET TimeZone = 'UTC'")
    direct.execute("CREATE TABLE weather AS SELECT * FROM read_parquet(?)", [str(data)])
    epsilon = Decimal(1)
    asked = 0

    def answer(sql: str) -> int:
        result = engine.run(sql, epsilon=epsilon)
        sealed = envelope.seal(buyer, result.encoded, aad=result.result_sm3.encode())
        assert len(sealed.ciphertext) > len(result.encoded)
        return len(result.table.rows)

    def ours() -> int:
        return answer(QUERY)

    def ours_new_sql() -> int:
        nonlocal asked
        asked += 1
        return answer(QUERY + " " * asked)

    def plain() -> int:
        return len(direct.execute(QUERY).fetchall())

    groups = ours()
    assert groups == plain(), "the two answers have different groups"
    our_ms: list[float] = []
    new_sql_ms: list[float] = []
    direct_ms: list[float] = []
    for _ in range(ROUNDS):
        for run, times in ((ours, our_ms), (ours_new_sql, new_sql_ms), (plain, direct_ms)):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
    engine.close()
    direct.close()
    return groups, our_ms, new_sql_ms, direct_ms


def end_to_end(root: Path, data: Path, limits: ComputeLimits) -> list[float]:
    """Milliseconds from the buyer's request to the checked, decrypted answer."""
    operator, provider_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    settings = Settings(
        data_dir=root / "exchange",
        database_url=f"sqlite:///{root / 'exchange.db'}",
        operator_public_keys=[operator.public_key().to_pem().decode()],
    )
    described = describe_file(data, sample_rows=0, row_index=root / "rows.idx")
    with serve_in_thread(create_app(settings)) as url:
        op = ExchangeClient(url, key=operator)
        provider = ExchangeClient(url, key=provider_key)
        buyer = ExchangeClient(url, key=SM2PrivateKey.generate())
        engines = EngineCache(limits)
        try:
            provider.register("重庆气象数据", "provider")
            op.approve_participant(provider_key.key_id())
            fields = provider.listing_from_file(
                data,
                computation=OFFER,
                title="山城 hourly temperatures",
                description="",
                category="environment",
                tags=[],
                providers=[{"key_id": provider.key_id, "share_bps": 10_000}],
                update_frequency="once",
                licence="Shancheng standard data licence v1",
                usage_terms="Research only.",
                pricing={"model": "fixed", "price": 100},
                declarations=DECLARATIONS,
            )
            listing = provider.create_listing(fields)
            provider.submit_listing(listing.id)
            op.review_listing(listing.id)
            op.publish_listing(listing.id)
            buyer.register("买家", "buyer")
            op.deposit(buyer.key_id or "", 1_000_000, "bank transfer")
            queries = END_TO_END_ROUNDS + 1
            order = buyer.place_order(buyer.quote(listing.id, computation=True, queries=queries))
            dataset = Dataset(
                listing.id,
                listing.version,
                data,
                listing.format,
                described.sm3,
                listing.row_count,
                described.row_root,
                None,
            )
            answerer = Answerer(
                provider, AgentState(root / "agent"), {listing.id: dataset}, engines, lambda _: None
            )

            def ask() -> None:
                asked = buyer.request_computation(order.id, QUERY)
                assert answerer.answer(provider.computation(asked.id)) == "completed"
                answer = buyer.query_answer(asked.id)
                assert answer.rows and answer.epsilon_spent == 1

            ask()  # loads the engine once, as the running agent does per listing version
            times: list[float] = []
            for _ in range(END_TO_END_ROUNDS):
                start = time.perf_counter()
                ask()
                times.append((time.perf_counter() - start) * 1000)
            return times
        finally:
            engines.close()
            for client in (op, provider, buyer):
                client.close()


def main() -> None:
    limits = ComputeLimits()
    with tempfile.TemporaryDirectory(prefix="shancheng-bench-query-") as tmp:
        data = Path(tmp) / "weather.parquet"
        write_weather(data)
        groups, our_ms, new_sql_ms, direct_ms = engine_vs_duckdb(data, limits)
        whole_ms = end_to_end(Path(tmp), data, limits)
    ours_median = statistics.median(our_ms)
    new_sql_median = statistics.median(new_sql_ms)
    direct_median = statistics.median(direct_ms)
    print(f"rows {ROWS}, groups {groups}, threads {limits.threads}, rounds {ROUNDS}")
    print(f"ours   median {ours_median:.1f} ms (min {min(our_ms):.1f})")
    print(f"ours, new SQL median {new_sql_median:.1f} ms (min {min(new_sql_ms):.1f})")
    print(f"direct median {direct_median:.1f} ms (min {min(direct_ms):.1f})")
    whole_median = statistics.median(whole_ms)
    print(f"end to end median {whole_median:.1f} ms (min {min(whole_ms):.1f})")
    print(f"figure query_vs_duckdb {direct_median / ours_median:.2f} ratio")
    print(f"figure query_vs_duckdb_new_sql {direct_median / new_sql_median:.2f} ratio")
    print(f"figure query_1m_rows_ms {ours_median:.1f} ms")
    print(f"figure query_end_to_end_ms {whole_median:.1f} ms")


if __name__ == "__main__":
    main()
