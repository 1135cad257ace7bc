"""API benchmarks against a real uvicorn server started by this run.

.venv/bin/python bench/api.py [--sizes 10000,100000] [--seconds 2] [--parts search,orders]
    [--rounds 5] [--no-compare-plain] [--buyers 400] [--order-clients 8] [--database-url URL]

Parts (each a function ``part_<name>(ctx)`` that adds its figures with
``ctx.figure``; add a part to ``PARTS`` to extend the run):

* ``search``: seeds published listings directly into the database (bulk rows
  plus the search index rows, no per-listing HTTP) up to 10k and then 100k,
  and measures ``GET /listings/search`` for four representative searches
  (a Chinese text query, text + filters, filters only, page 2 through the
  cursor), each beside ``GET /.well-known/shancheng/log-key`` (a trivial
  endpoint of the same app) as the ratio baseline. For every case: p50/p99
  latency of one client issuing requests back to back (keep-alive), and
  requests/s with ``--clients`` concurrent clients. Then the slow shapes
  (``SLOW_SEARCHES``: a very common term, one Chinese character, two): p50 of
  back-to-back requests, in ``--rounds`` rounds that take the cases in turn (a
  shared machine drifts: each figure is the median of its rounds' p50s), and,
  unless ``--no-compare-plain``, the same requests in the same rounds to a
  second server on the same database running the plain plan
  (``exchange.listings.search.PLAIN``): the ratio is what the plans buy,
  measured within one run. With a PostgreSQL ``--database-url`` the search
  figures are named ``search_pg_...``.
* ``orders``: one provider publishes a fixed-price listing through the API;
  ``--buyers`` buyers register, are funded by operator deposits
  (``deposit.credited``) and each get a quote. Each buyer's order is then
  prepared whole before the clock starts: the buyer-signed ``order.placed``
  record, an ``Idempotency-Key`` and the RFC 9421 request signature
  (``clients.signing``), so the client's own SM2 work does not compete with the
  server for the CPU while it is measured; the server's verification of both
  signatures and the quote's is measured. ``--order-clients`` threads (one
  keep-alive connection each) send the ``POST /orders`` once each (after one
  unmeasured warm-up order per thread), and the same number of ``GET`` requests
  of the trivial endpoint is sent the same way just before as the ratio
  baseline: requests/s over the whole batch and the p50/p99 latency of its
  requests. Every order must answer 201 with the price in escrow.
  ``order_vs_sm2_limit`` is orders/s against the SM2 limit (single-thread
  verifications/s ÷ verifications per order); ``trivial_vs_sm2_limit`` is the
  trivial endpoint's rate against the same limit: the ceiling any endpoint of
  this server stack can reach here. ``server_cpu_ms_per_order`` and
  ``server_cpu_ms_per_trivial`` are the server processes' CPU time (user +
  system, from ``/proc``, every worker included) over each batch ÷ its requests.

The server is one uvicorn process (one worker) on 127.0.0.1, started in a
child process and stopped at the end; the database is a temporary SQLite file
(WAL) unless ``--database-url`` names a PostgreSQL database (its tables must
be empty of listings). Request loops are bounded by time and count.
The last lines are ``figure <name> <value> <unit>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import Engine, insert
from sqlmodel import SQLModel

from clients.signing import SM2RequestSigner
from exchange.db import make_engine
from exchange.listings.models import Listing
from exchange.listings.search import (
    index_values,
)
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

TRIVIAL = "/.well-known/shancheng/log-key"
TABLES = SQLModel.metadata.tables

# ---------------------------------------------------------------- server


def _serve(
    settings_kw: dict[str, Any], port: int, plain_search: bool = False, workers: int = 1
) -> None:
    import uvicorn  # (in the child process)

    from exchange.app import create_app
    from exchange.listings.search import planner as search
    from exchange.settings import Settings

    search.PLAIN = plain_search

    app = create_app(Settings(**settings_kw))
    if workers == 1:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
        return
    # as `shancheng serve --workers N`: uvicorn's worker processes, each building
    # the app from the SHANCHENG_* variables
    app.state.engine.dispose()
    # uvicorn re-opens the descriptor number of this process's stdin in each worker;
    # multiprocessing left it on one a spawned worker does not inherit: use 0
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdin = os.fdopen(0)
    for name, value in settings_kw.items():
        os.environ[f"SHANCHENG_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, list) else str(value)
        )
    uvicorn.run(
        "exchange.app:create_app",
        factory=True,
        workers=workers,
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid`` and every process
    under it (uvicorn's workers); ``None`` where there is no Linux ``/proc``."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, CPU seconds)
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # (the process ended meanwhile)
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    if pid not in stats:
        return None
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats[current][1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def running_server(
    settings_kw: dict[str, Any], plain_search: bool = False, workers: int = 1
) -> Iterator[Server]:
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(settings_kw, port, plain_search, workers), daemon=workers == 1
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        # each uvicorn worker process imports and builds the whole app: on a loaded
        # machine two of them took over a minute to answer
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + TRIVIAL, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        assert process.pid is not None
        yield Server(url, process.pid)
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
    server: Server
    operator: SM2PrivateKey  # configured as the exchange's operator
    settings: dict[str, Any] = field(default_factory=dict)  # the server's Settings(**...)
    figures: list[tuple[str, float, str]] = field(default_factory=list)
    order_rps: float = 0.0  # of the last orders part
    quiet: bool = False  # an extra run (--workers): no figures of its own

    def figure(self, name: str, value: float, unit: str) -> None:
        self.figures.append((name, value, unit))

    @property
    def url(self) -> str:
        return self.server.url


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
        else:  # the hits read listing and listing_provider: planned without stats, they scan
            for table in ("listing_search", "listing_search_tag", "listing", "listing_provider"):
                connection.exec_driver_sql(f"ANALYZE {table}")
    return time.perf_counter() - began


SEARCHES: dict[str, dict[str, Any]] = {
    "text": {"q": "重庆交通流量"},
    "text_filters": {"q": "traffic", "category": "transport", "max_price": 200_000},
    "filters": {"category": "finance", "pricing_model": "fixed", "tag": "open"},
    "page2": {"q": "重庆交通流量", "limit": 10},  # page 2, through page 1's cursor
}


SLOW_SEARCHES: dict[str, dict[str, Any]] = {
    "common": {"q": "traffic"},  # a word in about half the descriptions
    "1char": {"q": "庆"},  # one Chinese character (a tenth of the titles)
    "2char_zh": {"q": "重庆"},  # two (the same tenth)
}


def latency_p50(url: str, params: dict[str, Any], seconds: float) -> float:
    """p50 (ms) of back-to-back requests on one connection for ``seconds``."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get("/listings/search", params=params).raise_for_status()  # warm up
        end = time.perf_counter() + seconds
        while (time.perf_counter() < end or len(latencies) < 3) and len(latencies) < 20_000:
            start = time.perf_counter()
            response = client.get("/listings/search", params=params)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
    return statistics.median(latencies) * 1000


def slow_search_p50(
    urls: dict[str, str], seconds: float, rounds: int
) -> dict[tuple[str, str], float]:
    """(plan, case) → the median over ``rounds`` of its p50; each round takes every
    case and plan in turn (plans in alternating order), ``seconds / rounds`` each."""
    found: dict[tuple[str, str], list[float]] = {}
    for n in range(rounds):
        for case, params in SLOW_SEARCHES.items():
            plans = list(urls) if n % 2 == 0 else list(reversed(urls))
            for plan in plans:
                p50 = latency_p50(urls[plan], params, seconds / rounds)
                found.setdefault((plan, case), []).append(p50)
    return {key: statistics.median(values) for key, values in found.items()}


def part_search(ctx: Context) -> None:
    args = ctx.args
    providers = [f"{n:064x}" for n in range(1, 51)]
    p50: dict[int, float] = {}
    prefix = "search_pg" if ctx.engine.dialect.name == "postgresql" else "search"
    with contextlib.ExitStack() as stack:
        urls = {"plans": ctx.url}
        if args.compare_plain:
            urls["plain"] = stack.enter_context(running_server(ctx.settings, plain_search=True)).url
        _search_sizes(ctx, providers, prefix, urls, p50)
    if len(args.sizes) > 1:
        small, large = args.sizes[0], args.sizes[-1]
        ctx.figure(
            f"{prefix}_growth_{small // 1000}k_to_{large // 1000}k",
            p50[large] / p50[small],
            "ratio",
        )


def _search_sizes(
    ctx: Context, providers: list[str], prefix: str, urls: dict[str, str], p50: dict[int, float]
) -> None:
    """Seed up to each size, then measure there (``p50``: size → the cases' median)."""
    args = ctx.args
    seeded = 0
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
        ctx.figure(f"{prefix}_p50_{label}_ms", p50[size], "ms")
        if size == args.sizes[-1]:
            ctx.figure(f"{prefix}_p99_{label}_ms", max(r.p99_ms for r in results.values()), "ms")
            ctx.figure(
                f"{prefix}_rps_{label}", statistics.median(r.rps for r in results.values()), "req/s"
            )
            ctx.figure(f"{prefix}_vs_trivial_{label}", p50[size] / trivial.p50_ms, "ratio")
            ctx.figure(f"{prefix}_worst_p50_{label}_ms", worst_p50, "ms")
        slow = slow_search_p50(urls, args.seconds, args.rounds)
        for case, params in SLOW_SEARCHES.items():
            total = httpx.get(ctx.url + "/listings/search", params=params).json()["total"]
            line = f"  search {case:14} (matches {total:6}) p50 {slow['plans', case]:7.2f} ms"
            ctx.figure(f"{prefix}_{case}_p50_{label}_ms", slow["plans", case], "ms")
            if "plain" in urls:
                ratio = slow["plain", case] / slow["plans", case]
                line += f"   plain plan p50 {slow['plain', case]:7.2f} ms  (x{ratio:.1f})"
                if size == args.sizes[-1]:
                    ctx.figure(f"{prefix}_{case}_plain_p50_{label}_ms", slow["plain", case], "ms")
                    ctx.figure(f"{prefix}_{case}_vs_plain_{label}", ratio, "ratio")
            print(line + f"   (median of {args.rounds} rounds)")


# ---------------------------------------------------------------- order placement

ORDER_PRICE = 19_900  # fen


def _signed(key: SM2PrivateKey, record_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"record": sign_record(key, record_type, payload).to_dict()}


def _expect(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON body of ``response``, which must have ``status`` (else the run stops)."""
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body


def _setup_post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST during setup (not measured), once more if the server had closed the idle
    keep-alive connection as the request went out (uvicorn closes them after 5 s: on a
    loaded machine setup requests can be that far apart). Signed anew (a new nonce); a
    record stored the first time would be refused 409, and the run would stop."""
    try:
        return client.post(path, json=body)
    except (httpx.ReadError, httpx.RemoteProtocolError):
        return client.post(path, json=body)


class Actor:
    """A participant talking to the exchange with signed requests."""

    def __init__(self, url: str, key: SM2PrivateKey | None = None) -> None:
        self.key = key or SM2PrivateKey.generate()
        self.http = httpx.Client(base_url=url, auth=SM2RequestSigner(self.key), timeout=30)

    def act(
        self, path: str, record_type: str, payload: dict[str, Any], status: int = 200
    ) -> dict[str, Any]:
        body = _signed(self.key, record_type, payload)
        return _expect(_setup_post(self.http, path, body), status)

    def register(self, role: str, name: str) -> None:
        payload = {
            "display_name": name,
            "role": role,
            "public_key": self.key.public_key().to_pem().decode(),
        }
        body = _signed(self.key, "participant.registered", payload)
        _expect(httpx.post(self.http.base_url.join("/participants"), json=body), 201)

    def close(self) -> None:
        self.http.close()


def publish_listing(operator: Actor, provider: Actor) -> str:
    """A fixed-price listing taken through draft → submit → review → publish."""
    provider.register("provider", "bench provider")
    key_id = provider.key.key_id()
    operator.act(f"/participants/{key_id}/approve", "participant.approved", {"participant": key_id})
    listing_id = str(uuid.uuid4())
    content = {
        "listing_id": listing_id,
        "title": "重庆公交客流 2025 (bench)",
        "description": "Hourly boardings per stop.",
        "category": "transport",
        "tags": ["bus", "chongqing"],
        "providers": [{"key_id": key_id, "share_bps": 10_000}],
        "columns": [{"name": "stop", "type": "string"}, {"name": "boardings", "type": "integer"}],
        "sample_rows": [{"stop": "解放碑", "boardings": 1200}],
        "row_count": 1_000_000,
        "byte_size": 52_000_000,
        "content_digest": "ab" * 32,
        "row_root": "cd" * 32,
        "format": "csv",
        "update_frequency": "monthly",
        "licence": "Shancheng standard data licence v1",
        "usage_terms": "No re-identification.",
        "pricing": {"model": "fixed", "price": ORDER_PRICE},
        "declarations": {
            "classification": "一般",
            "personal_information": False,
            "source_legality": "Collected by the operator under contract 2025-17.",
            "permitted_purposes": ["research"],
        },
    }
    provider.act("/listings", "listing.drafted", content, status=201)
    for actor, action, record_type in (
        (provider, "submit", "listing.submitted"),
        (operator, "review", "listing.review_started"),
        (operator, "publish", "listing.published"),
    ):
        actor.act(f"/listings/{listing_id}/{action}", record_type, {"listing_id": listing_id})
    return listing_id


def quoted_buyer(
    url: str, operator: Actor, listing_id: str, n: int
) -> tuple[Actor, dict[str, Any]]:
    """A registered buyer, funded with the price by an operator deposit, and its quote."""
    buyer = Actor(url)
    buyer.register("buyer", f"bench buyer {n}")
    key_id = buyer.key.key_id()
    deposit = {"participant": key_id, "amount": ORDER_PRICE, "reference": f"bench-{n}"}
    operator.act(f"/accounts/{key_id}/deposits", "deposit.credited", deposit, status=201)
    quote: dict[str, Any] = _expect(
        _setup_post(buyer.http, f"/listings/{listing_id}/quotes", {"terms": {}}), 201
    )["quote"]
    return buyer, quote


def order_request(url: str, buyer: SM2PrivateKey, quote: dict[str, Any]) -> httpx.Request:
    """``POST /orders`` ready to send: buyer-signed record, Idempotency-Key, RFC 9421
    signature (its ``created`` is now: send it within ``auth_clock_skew_s``)."""
    placed = {
        "order_id": str(uuid.uuid4()),
        "quote": quote,
        "declaration": {"purpose": "internal_analytics", "processing_region": "CN"},
    }
    body = _signed(buyer, "order.placed", placed)
    request = httpx.Request(
        "POST", url + "/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    SM2RequestSigner(buyer).sign(request)
    return request


@dataclass
class Batch:
    """Outcome of sending a batch of prepared requests concurrently."""

    measured: Measured
    statuses: dict[int, int]  # status → count
    bodies: list[dict[str, Any]]  # of the responses with the expected status


def send_batch(url: str, requests: list[httpx.Request], clients: int, expected: int) -> Batch:
    """Send each prepared request once, spread over ``clients`` threads with one
    keep-alive connection each (opened before the clock starts); latency of each
    request and requests/s over the batch (answers with ``expected`` status only)."""
    slices = [requests[i::clients] for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    responses: list[list[httpx.Response]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.get(TRIVIAL).raise_for_status()  # open the connection
            start.wait()
            for request in slices[i]:
                began = time.perf_counter()
                response = client.send(request)
                latencies[i].append(time.perf_counter() - began)
                responses[i].append(response)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for part in latencies for x in part)
    answered = [r for part in responses for r in part]
    if len(answered) != len(requests):
        raise RuntimeError(f"{len(requests) - len(answered)} requests were not answered")
    statuses: dict[int, int] = {}
    for r in answered:
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    ok = [r.json() for r in answered if r.status_code == expected]
    return Batch(
        measured=Measured(
            p50_ms=statistics.median(every) * 1000,
            p99_ms=every[min(len(every) - 1, int(len(every) * 0.99))] * 1000,
            rps=len(ok) / elapsed,
            requests=len(every),
        ),
        statuses=statuses,
        bodies=ok,
    )


def part_orders(ctx: Context) -> None:
    args = ctx.args
    operator = Actor(ctx.url, ctx.operator)
    provider = Actor(ctx.url)
    buyers: list[Actor] = []
    try:
        began = time.perf_counter()
        listing_id = publish_listing(operator, provider)
        quotes: list[dict[str, Any]] = []
        warmup = args.order_clients  # one unmeasured order per client thread first
        with ThreadPoolExecutor(args.order_clients) as pool:  # (setup, not measured)
            for buyer, quote in pool.map(
                lambda n: quoted_buyer(ctx.url, operator, listing_id, n),
                range(warmup + args.buyers),
            ):
                buyers.append(buyer)
                quotes.append(quote)
        print(
            f"\norders: {warmup + args.buyers} buyers registered, funded and quoted in "
            f"{time.perf_counter() - began:.1f} s; {args.order_clients} client threads"
        )
        orders = [order_request(ctx.url, b.key, q) for b, q in zip(buyers, quotes, strict=True)]
        warm = send_batch(ctx.url, orders[:warmup], args.order_clients, 201)
        orders = orders[warmup:]
        trivial_requests = [httpx.Request("GET", ctx.url + TRIVIAL) for _ in orders]
        cpu_before = server_cpu_s(ctx.server.pid)
        trivial = send_batch(ctx.url, trivial_requests, args.order_clients, 200)
        cpu_between = server_cpu_s(ctx.server.pid)
        placed = send_batch(ctx.url, orders, args.order_clients, 201)
        cpu_after = server_cpu_s(ctx.server.pid)
    finally:
        for actor in (operator, provider, *buyers):
            actor.close()
    for name, batch in ((f"trivial {TRIVIAL}", trivial), ("POST /orders", placed)):
        m = batch.measured
        print(
            f"  {name:52} p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms  "
            f"{m.rps:8.0f} req/s  ({m.requests} requests)"
        )
    wrong = [b for b in placed.bodies if b["order"]["state"] != "placed"]
    wrong += [b for b in placed.bodies if b["order"]["escrow"] != ORDER_PRICE]
    if (
        warm.statuses != {201: warmup}
        or placed.statuses != {201: len(orders)}
        or wrong
        or trivial.statuses != {200: len(orders)}
    ):
        raise RuntimeError(
            f"orders answered {warm.statuses} (warm-up), {placed.statuses}; "
            f"trivial {trivial.statuses}"
        )
    ratio = placed.measured.p50_ms / trivial.measured.p50_ms
    print(
        f"  POST /orders p50 is x{ratio:.1f} the trivial endpoint's; "
        f"its rate {placed.measured.rps / trivial.measured.rps:.1%} of the trivial rate"
    )
    ctx.order_rps = placed.measured.rps
    if ctx.quiet:
        return
    verify_rate = sm2_verify_rate()
    limit = verify_rate / SM2_VERIFICATIONS_PER_ORDER
    print(
        f"  SM2 verify on one thread: {verify_rate:.0f}/s; at "
        f"{SM2_VERIFICATIONS_PER_ORDER} verifications per order the limit is {limit:.0f} orders/s"
    )
    cpu_ms: dict[str, float] = {}  # server CPU per request
    if cpu_before is not None and cpu_between is not None and cpu_after is not None:
        cpu_ms["trivial"] = (cpu_between - cpu_before) * 1000 / len(orders)
        cpu_ms["order"] = (cpu_after - cpu_between) * 1000 / len(orders)
        print(
            f"  server CPU per request: {cpu_ms['trivial']:.2f} ms (trivial), "
            f"{cpu_ms['order']:.2f} ms (order); at half the limit one process has "
            f"{1000 / (limit / 2):.2f} ms per order for all of it (one GIL)"
        )
    ctx.figure("order_rps", placed.measured.rps, "req/s")
    ctx.figure("order_p50_ms", placed.measured.p50_ms, "ms")
    ctx.figure("order_p99_ms", placed.measured.p99_ms, "ms")
    ctx.figure("order_vs_trivial", ratio, "ratio")
    ctx.figure("sm2_verify_per_s", verify_rate, "verify/s")
    ctx.figure("order_vs_sm2_limit", placed.measured.rps / limit, "ratio")
    ctx.figure("order_p99_over_p50", placed.measured.p99_ms / placed.measured.p50_ms, "ratio")
    # the ceiling this server stack sets: a request that does nothing, against the same limit
    ctx.figure("trivial_vs_sm2_limit", trivial.measured.rps / limit, "ratio")
    for name, value in cpu_ms.items():
        ctx.figure(f"server_cpu_ms_per_{name}", value, "ms")


SM2_VERIFICATIONS_PER_ORDER = 2
"""SM2 verifications the server makes per ``POST /orders`` (the code path): the
RFC 9421 request signature (exchange.auth.verifier) and the buyer's signature
on the ``order.placed`` record (exchange.log.service.check_submission). The
quote's signature is the exchange's own: verified once per process, and not
at all in the process that issued it (exchange.quotes), as here. The log's
promise signature is one per group-committed batch, shared by its orders."""


def sm2_verify_rate(seconds: float = 2.0) -> float:
    """SM2 verifications per second on one thread of this process (20-byte messages)."""
    key = SM2PrivateKey.generate()
    public = key.public_key()
    message = b"shancheng bench 20by"
    signature = key.sign(message)
    count = 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(50):
            public.verify(signature, message)
        count += 50
    return count / elapsed


PARTS: dict[str, Callable[[Context], None]] = {"search": part_search, "orders": part_orders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="listing counts, ascending")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement loop")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for req/s")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts to run")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of the slow search cases (median)"
    )
    parser.add_argument(
        "--compare-plain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the slow search cases on a second server with the plain plan too",
    )
    parser.add_argument("--buyers", type=int, default=400, help="orders placed (one per buyer)")
    parser.add_argument(
        "--order-clients", type=int, default=8, help="concurrent client threads for orders"
    )
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with N > 1, the orders part runs again on a server of N uvicorn worker "
        "processes (same database) and prints order_[pg_]N_workers_vs_1",
    )
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'exchange.db'}"
        operator = SM2PrivateKey.generate()
        settings_kw = {
            "data_dir": Path(tmp),
            "database_url": url,
            "sequencer_enabled": False,
            "operator_public_keys": [operator.public_key().to_pem().decode()],
        }
        print(f"database: {url.split('@')[-1]}; the server is one uvicorn worker on 127.0.0.1")
        with running_server(settings_kw) as server:  # creates the tables on start
            engine = make_engine(url)
            try:
                ctx = Context(
                    args=args, engine=engine, server=server, operator=operator, settings=settings_kw
                )
                for name in args.parts.split(","):
                    PARTS[name](ctx)
            finally:
                engine.dispose()
        if args.workers > 1 and "orders" in args.parts.split(","):
            with running_server(settings_kw, workers=args.workers) as server:
                print(f"\nthe same orders on {args.workers} uvicorn worker processes:")
                engine = make_engine(url)
                try:
                    extra = Context(
                        args=args,
                        engine=engine,
                        server=server,
                        operator=operator,
                        settings=settings_kw,
                        quiet=True,
                    )
                    part_orders(extra)
                finally:
                    engine.dispose()
            backend = "pg_" if url.startswith("postgresql") else ""
            ctx.figure(
                f"order_{backend}{args.workers}_workers_vs_1",
                extra.order_rps / ctx.order_rps,
                "ratio",
            )
    print()
    for name, value, unit in ctx.figures:
        print(f"figure {name} {value:.2f} {unit}")


if __name__ == "__main__":
    main()
