"""API benchmarks against a real uvicorn server started by this run.

.venv/bin/python bench/api.py [--sizes 10000,100000] [--seconds 2] [--database-url URL]

Parts (each a function ``part_<name>(ctx) -> list[Figure]``; add a part to
``PARTS`` to extend the run, e.g. order placement):

* ``search``: seeds published listings directly into the database (bulk rows
  plus the search index rows, no per-listing HTTP) up to 10k and then 100k,
  and measures ``GET /listings/search`` for four representative searches
  (a Chinese text query, text + filters, filters only, page 2 through the
  cursor), each beside ``GET /.well-known/shancheng/log-key`` (a trivial
  endpoint of the same app) as the ratio baseline. For every case: p50/p99
  latency of one client issuing requests back to back (keep-alive), and
  requests/s with ``--clients`` concurrent clients.

The server is one uvicorn process (one worker) on 127.0.0.1, started in a
child process and stopped at the end; the database is a temporary SQLite file
(WAL) unless ``--database-url`` names a PostgreSQL database (its tables must
be empty of listings). Request loops are bounded by time and count.
The last lines are ``figure <name> <value> <unit>``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import Engine, insert
from sqlmodel import SQLModel

from exchange.db import make_engine
from exchange.listings.models import Listing
from exchange.listings.search_index import (
    index_values,
)

TRIVIAL = "/.well-known/shancheng/log-key"
TABLES = SQLModel.metadata.tables

# ---------------------------------------------------------------- server


def _serve(settings_kw: dict[str, Any], port: int) -> None:  # in the child process
    import uvicorn

    from exchange.app import create_app
    from exchange.settings import Settings

    app = create_app(Settings(**settings_kw))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(settings_kw: dict[str, Any]) -> Iterator[str]:
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(settings_kw, port), daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + TRIVIAL, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.join(timeout=20)
        if process.is_alive():
            process.kill()
            process.join()


# ---------------------------------------------------------------- measuring


@dataclass
class Measured:
    p50_ms: float
    p99_ms: float
    rps: float
    requests: int


def measure(url: str, path: str, params: dict[str, Any], seconds: float, clients: int) -> Measured:
    """Latency of back-to-back requests on one connection, then the rate with
    ``clients`` concurrent connections; each loop is bounded in time and count."""
    latencies: list[float] = []
    with httpx.Client(base_url=url) as client:
        for _ in range(3):  # warm up
            client.get(path, params=params).raise_for_status()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and len(latencies) < 20_000:
            start = time.perf_counter()
            response = client.get(path, params=params)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
    counts = [0] * clients

    def worker(i: int, stop: float) -> None:
        with httpx.Client(base_url=url) as client:
            while time.perf_counter() < stop and counts[i] < 100_000:
                client.get(path, params=params).raise_for_status()
                counts[i] += 1

    stop = time.perf_counter() + seconds
    began = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i, stop)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return Measured(
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        rps=sum(counts) / elapsed,
        requests=len(latencies) + sum(counts),
    )


@dataclass
class Context:
    args: argparse.Namespace
    engine: Engine
    url: str
    figures: list[tuple[str, float, str]] = field(default_factory=list)

    def figure(self, name: str, value: float, unit: str) -> None:
        self.figures.append((name, value, unit))


# ---------------------------------------------------------------- search

CITIES = ["重庆", "成都", "上海", "北京", "广州", "深圳", "武汉", "西安", "杭州", "南京"]
TOPICS = [
    "交通流量",
    "公交客流",
    "气象观测",
    "零售销售",
    "能源消耗",
    "医疗资源",
    "人口统计",
    "物流运输",
]
CATEGORIES = ["transport", "environment", "retail", "energy", "health", "demography", "logistics",
              "finance", "agriculture", "education", "tourism", "industry"]  # fmt: skip
WORDS = [
    "hourly",
    "daily",
    "monthly",
    "counts",
    "average",
    "sensor",
    "station",
    "junction",
    "vehicle",
    "passenger",
    "store",
    "sales",
    "energy",
    "power",
    "grid",
    "hospital",
    "beds",
    "population",
    "census",
    "freight",
    "parcel",
    "route",
    "weather",
    "rain",
    "temperature",
    "humidity",
    "price",
    "index",
    "open",
    "quality",
    "audited",
    "sample",
    "district",
    "county",
    "city",
    "province",
    "river",
    "bridge",
    "tunnel",
    "metro",
    "airport",
    "port",
    "traffic",
]
TAGS = [f"tag{n}" for n in range(40)] + ["open", "chongqing", "realtime", "historical"]


def _pricing(rng: random.Random) -> dict[str, Any]:
    model = rng.choice(["free", "fixed", "fixed", "tiers", "subscription"])
    if model == "free":
        return {"model": "free"}
    if model == "fixed":
        return {"model": "fixed", "price": rng.randrange(100, 1_000_000)}
    if model == "tiers":
        return {
            "model": "tiers",
            "tiers": [
                {"up_to_rows": 100_000, "price_per_1000_rows": rng.randrange(10, 5000)},
                {"up_to_rows": None, "price_per_1000_rows": rng.randrange(1, 1000)},
            ],
        }
    return {
        "model": "subscription",
        "price_per_period": rng.randrange(1000, 500_000),
        "period_days": 30,
        "max_periods": 12,
    }


def seed_listings(engine: Engine, start: int, count: int, providers: list[str]) -> float:
    """Insert ``count`` published listings (and their index rows) in bulk; seconds taken."""
    rng = random.Random(start)
    began = time.perf_counter()
    now = int(time.time() * 1000)
    chunk = 5000
    for base in range(start, start + count, chunk):
        listings: list[dict[str, Any]] = []
        owners: list[dict[str, Any]] = []
        versions: list[dict[str, Any]] = []
        search_rows: list[dict[str, Any]] = []
        tag_rows: list[dict[str, Any]] = []
        for n in range(base, min(base + chunk, start + count)):
            city, topic = rng.choice(CITIES), rng.choice(TOPICS)
            owner = rng.choice(providers)
            tags = rng.sample(TAGS, rng.randrange(1, 5))
            row = Listing(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                owner_key_id=owner,
                state="published",
                title=f"{city}{topic}数据 {2000 + n % 26} #{n}",
                description=" ".join(rng.choices(WORDS, k=30)),
                category=rng.choice(CATEGORIES),
                tags=tags,
                columns=[{"name": "value", "type": "integer"}],
                sample_rows=[],
                row_count=rng.randrange(1, 10**8),
                byte_size=rng.randrange(1, 10**10),
                content_digest="ab" * 32,
                format="csv",
                update_frequency="daily",
                version=1,
                licence="standard",
                usage_terms="",
                pricing=_pricing(rng),
                classification=rng.choice(["一般", "一般", "一般", "重要"]),
                personal_information=False,
                source_legality="own collection",
                permitted_purposes=["research"],
                created_at=now - n,
                updated_at=now - n,
                published_at=now - (10**9 - n),
            )
            listings.append(row.model_dump())
            owners.append(
                {"listing_id": row.id, "provider_key_id": owner, "share_bps": 10_000, "position": 0}
            )
            versions.append(
                {
                    "listing_id": row.id,
                    "version": 1,
                    "content_digest": row.content_digest,
                    "row_count": row.row_count,
                    "byte_size": row.byte_size,
                    "format": "csv",
                    "created_at": row.created_at,
                    "log_leaf_hash": "00" * 32,
                }
            )
            search_rows.append(index_values(row))
            tag_rows.extend({"tag": tag, "listing_id": row.id} for tag in tags)
        with engine.begin() as connection:
            connection.execute(insert(TABLES["listing"]), listings)
            connection.execute(insert(TABLES["listing_provider"]), owners)
            connection.execute(insert(TABLES["listing_version"]), versions)
            connection.execute(insert(TABLES["listing_search"]), search_rows)
            connection.execute(insert(TABLES["listing_search_tag"]), tag_rows)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.exec_driver_sql("ANALYZE listing_search")
            connection.exec_driver_sql("ANALYZE listing_search_tag")
    return time.perf_counter() - began


SEARCHES: dict[str, dict[str, Any]] = {
    "text": {"q": "重庆交通流量"},
    "text_filters": {"q": "traffic", "category": "transport", "max_price": 200_000},
    "filters": {"category": "finance", "pricing_model": "fixed", "tag": "open"},
    "page2": {"q": "重庆交通流量", "limit": 10},  # page 2, through page 1's cursor
}


def part_search(ctx: Context) -> None:
    args = ctx.args
    providers = [f"{n:064x}" for n in range(1, 51)]
    seeded = 0
    p50: dict[int, float] = {}
    for size in args.sizes:
        took = seed_listings(ctx.engine, seeded, size - seeded, providers)
        print(f"\nseeded {size - seeded} listings in {took:.1f} s (now {size})")
        seeded = size
        trivial = measure(ctx.url, TRIVIAL, {}, args.seconds, args.clients)
        print(
            f"  {'trivial ' + TRIVIAL:52} p50 {trivial.p50_ms:7.2f} ms  p99 "
            f"{trivial.p99_ms:7.2f} ms  {trivial.rps:8.0f} req/s"
        )
        results: dict[str, Measured] = {}
        for name, params in SEARCHES.items():
            params = dict(params)
            first = httpx.get(ctx.url + "/listings/search", params=params).json()
            if name == "page2":
                params["cursor"] = first["next_cursor"]
            total = first["total"]
            result = measure(ctx.url, "/listings/search", params, args.seconds, args.clients)
            results[name] = result
            print(
                f"  search {name:14} (matches {total:6}){'':17} p50 {result.p50_ms:7.2f} ms  "
                f"p99 {result.p99_ms:7.2f} ms  {result.rps:8.0f} req/s  "
                f"x{result.p50_ms / trivial.p50_ms:5.1f} trivial p50"
            )
        worst_p50 = max(r.p50_ms for r in results.values())
        p50[size] = statistics.median(r.p50_ms for r in results.values())
        label = f"{size // 1000}k"
        ctx.figure(f"search_p50_{label}_ms", p50[size], "ms")
        if size == args.sizes[-1]:
            ctx.figure(f"search_p99_{label}_ms", max(r.p99_ms for r in results.values()), "ms")
            ctx.figure(
                f"search_rps_{label}", statistics.median(r.rps for r in results.values()), "req/s"
            )
            ctx.figure(f"search_vs_trivial_{label}", p50[size] / trivial.p50_ms, "ratio")
            ctx.figure(f"search_worst_p50_{label}_ms", worst_p50, "ms")
    if len(args.sizes) > 1:
        small, large = args.sizes[0], args.sizes[-1]
        ctx.figure(
            f"search_growth_{small // 1000}k_to_{large // 1000}k", p50[large] / p50[small], "ratio"
        )


PARTS: dict[str, Callable[[Context], None]] = {"search": part_search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="listing counts, ascending")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement loop")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for req/s")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts to run")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'exchange.db'}"
        settings_kw = {"data_dir": Path(tmp), "database_url": url, "sequencer_enabled": False}
        print(f"database: {url.split('@')[-1]}; the server is one uvicorn worker on 127.0.0.1")
        with running_server(settings_kw) as base_url:  # creates the tables on start
            engine = make_engine(url)
            try:
                ctx = Context(args=args, engine=engine, url=base_url)
                for name in args.parts.split(","):
                    PARTS[name](ctx)
            finally:
                engine.dispose()
    print()
    for name, value, unit in ctx.figures:
        print(f"figure {name} {value:.2f} {unit}")


if __name__ == "__main__":
    main()
