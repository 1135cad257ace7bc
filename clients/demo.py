"""The whole story of the exchange, as a library: what ``shancheng demo`` runs.

Every step goes through the SDK (:class:`clients.sdk.ExchangeClient`), the
same calls a provider, buyer, operator or auditor would make, and the data
never leaves the provider's side unencrypted (provider custody):

1. ``exchange``: find the exchange at ``--exchange`` (``/health``), or start
   our own devnet + registry + API in the work directory when none answers
   (:func:`demo_exchange`, with the :class:`LocalExchangeStarter` the server's
   side provides: this package never imports the server).
2. ``keys``: SM2 keys for two co-providers, three buyers, an auditor and an
   assessor (the
   operator's key comes with the exchange), written to ``<work>/keys``.
3. ``register``: the participants register; the operator approves the providers
   and the assessor.
4. ``dataset``: a deterministic CSV of hourly 山城 weather-station observations,
   described in one streamed pass (:func:`clients.datasets.describe_file`: SM3,
   rows, the SM3 row-tree root, schema, sample).
5. ``listing``: provider A drafts the listing in provider custody with its row
   root (A 70 % / B 30 %, volume tiers), submits it; the operator reviews and
   publishes it. The exchange never receives the content. A second listing of
   the same file offers only computations (可用不可见): aggregates by district and
   month, k = 10, Laplace noise with ε 1 per query, ¥5 a query. The listing
   carries a usage policy (:data:`USAGE_POLICY`) and declared costs
   (:data:`COST_BASIS`).
   ``certificate``: the registration certificate the exchange issued with the
   publication: the three rights held by A and B with their shares.
6. ``agent``: provider A's agent (``shancheng provider agent``) starts as its
   own process beside the file (state in ``<work>/agent``, log in
   ``<work>/agent.log``): it checks the file against the listing and follows
   the event feed.
7. ``deposit``: the operator credits both buyers.
8. ``order``: the buyers search; buyer 1 quotes and orders rows [a, a+20,000)
   (``rows`` + ``row_offset``), buyer 2 the whole dataset (escrow).
9. ``deliver``: the agent cuts each order's rows, encrypts them to the buyer
   (SM4-GCM, key wrapped to the buyer's SM2 key), uploads the ciphertext and
   signs ``delivery.issued``; the story waits for both deliveries.
10. ``receive``: each buyer receives (:meth:`ExchangeClient.receive`): provider
    signature, ciphertext SM3, decryption, plaintext SM3, then the rows against
    their range proof and the provider-signed row root and row count (both
    orders are quantity orders under tiered pricing: all the rows are rows
    [0, N)); the rows of each decrypted file are counted.
11. ``digest``: each file on disk is checked once more against what the
    provider signed: buyer 2's file (all the rows) against the listing's SM3,
    each file's rows against their range proof and the row root.
12. ``accept``: the buyers accept; the exchange settles each order (split + fee).
13. ``balances``: every account and settlement is checked against the split
    computed here, independently.
14. ``compute``: buyer 3 buys three queries on the computation listing and asks
    for the average temperature per district and month: the agent answers from
    the file (k, noise), encrypted to buyer 3 and signed; buyer 3's SDK checks and
    decrypts it. Asking for the raw rows is refused before anything is spent.
    ``quality``: provider A reports the data's quality (GB/T 36344, computed
    where the data lives); the assessor orders it at 0 fen, recomputes and
    countersigns. ``price``: the listing's reference price (cost method from the
    declared costs, market method from comparable deals). ``policy``: buyer 1's
    order declaring marketing use is refused (``policy_violation``), nothing
    moves. ``payout``: provider A withdraws its earnings; the operator pays.
14. ``anchor``: wait until an anchor covering the last record is final.
15. ``receipts``: the auditor fetches the receipt of every record of the story.
16. ``audit``: each receipt is verified against the chain
    (:meth:`ExchangeClient.verify_receipt`, the code of ``shancheng audit verify``).
17. ``log``: the auditor walks the log (``shancheng audit log``).

:meth:`Demo.run` runs the steps in order; ``after={step: hook}`` lets a test
intervene between them (change a byte of the deliverable, of a bundle, …). A
failed check raises :class:`DemoFailure` naming the step. :meth:`Demo.close`
stops the agent; :meth:`Demo.story` says where everything is (``story.json``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from clients.datasets import DatasetDescription, DatasetError
from clients.sdk import (
    NO_RETRIES,
    PLATFORM_ACCOUNT,
    APIError,
    ClientError,
    DeliveryCheckError,
    ExchangeClient,
    Health,
    QueryRefusedError,
    Received,
    TransportError,
    key_from_files,
)
from clients.slices import SliceCheckError, verify_slice
from devnet.launcher import die_with_parent
from ledger.audit import AuditError, AuditInconclusiveError
from ledger.bundle import Bundle
from ledger.computation.offer import ComputationOffer
from ledger.errors import VerificationError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3_file

__all__ = [
    "DEFAULT_EXCHANGE_URL",
    "DEFAULT_OPERATOR_KEY",
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "DEMO_EXCHANGE_SETTINGS",
    "STEPS",
    "Demo",
    "DemoExchange",
    "DemoFailure",
    "LocalExchangeStarter",
    "Reporter",
    "SilentReporter",
    "StartedExchange",
    "StoryOrder",
    "bought_slice",
    "demo_exchange",
    "expected_split",
    "tier_price",
    "write_weather_csv",
]

T = TypeVar("T")

DEFAULT_EXCHANGE_URL: Final = "http://127.0.0.1:8000"
DEFAULT_OPERATOR_KEY: Final = Path("var/operator-key.pem")
DEFAULT_ROWS: Final = 100_000
DEFAULT_SEED: Final = 20250701
SLICE_ROWS: Final = 20_000
"""Rows buyer 1 buys (of a dataset of at least 100,000 rows; see :func:`bought_slice`)."""
SAMPLE_ROWS: Final = 3
"""Rows of the dataset the listing shows publicly (its first ones)."""
_AGENT_READY: Final = "following events"
"""What the agent logs once it checked its file and listens for orders."""

SHARE_A_BP: Final = 7_000
SHARE_B_BP: Final = 3_000
PRICE_TIERS: Final = (
    {"up_to_rows": 50_000, "price_per_1000_rows": 800},
    {"up_to_rows": None, "price_per_1000_rows": 500},
)
"""Volume tiers (graduated, fen per 1000 rows): the first 50,000 rows at ¥8.00 per
thousand, the rest at ¥5.00; 100,000 rows cost ¥650.00."""

COMPUTATION_OFFER: Final[Mapping[str, Any]] = {
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
        "epsilon_budget": "3",
        "bounds": {"temperature_c": ["-10", "45"]},
    },
    "price": {"unit": "query", "fen": 500},
}
"""What the computation listing allows: group by district and time, average and count
the temperature, never see a station; groups under 10 rows suppressed; Laplace noise,
ε 1 per query out of 3 per order; ¥5 a query."""
COST_BASIS: Final[Mapping[str, int]] = {
    "acquisition_fen": 4_000_000,
    "processing_fen": 800_000,
    "storage_fen": 200_000,
    "compliance_fen": 500_000,
    "other_fen": 0,
    "expected_units": 10_000,
    "margin_bp": 2_000,
}
"""What provider A declares its data cost (docs/pricing.md): ¥55,000 spread over 10,000
units of 1,000 rows, 20 % margin: a cost reference of ¥5.50 to ¥6.60 per 1,000 rows."""

USAGE_POLICY: Final[Mapping[str, Any]] = {
    "version": 1,
    "permitted_purposes": None,
    "prohibited_purposes": ["marketing", "resale"],
    "processing_regions": ["CN"],
    "access_days": 365,
    "onward_transfer": False,
    "attribution": "数据来源：山城气象数据有限公司",
}
"""The listing's usage policy (docs/policies.md): any purpose but marketing and resale,
processed in China, a year's use, no onward transfer, attribution required."""

QUALITY_SCHEMA: Final[Mapping[str, Any]] = {
    "fields": [
        {"name": "station_id", "type": "string",
         "constraints": {"required": True, "pattern": "CQ[0-9]{5}"}},
        {"name": "station_name", "type": "string", "constraints": {"required": True}},
        {"name": "district", "type": "string", "constraints": {"required": True}},
        {"name": "observed_at", "type": "datetime", "constraints": {"required": True}},
        {"name": "temperature_c", "type": "number",
         "constraints": {"minimum": -10, "maximum": 45}},
        {"name": "humidity_pct", "type": "integer",
         "constraints": {"minimum": 0, "maximum": 100}},
        {"name": "precipitation_mm", "type": "number", "constraints": {"minimum": 0}},
        {"name": "wind_speed_ms", "type": "number", "constraints": {"minimum": 0}},
        {"name": "aqi", "type": "integer", "constraints": {"minimum": 0, "maximum": 500}},
    ],
    "primaryKey": ["station_id", "observed_at"],
}  # fmt: skip
"""The Table Schema (docs/quality.md) provider A declares for its quality report."""

COMPUTATION_QUERIES: Final = 3
COMPUTATION_SQL: Final = (
    "SELECT district, month(observed_at) AS month, AVG(temperature_c) AS avg_t "
    "FROM weather GROUP BY district, month ORDER BY district, month"
)
RAW_ROWS_SQL: Final = "SELECT * FROM weather"

DEMO_EXCHANGE_SETTINGS: Final[Mapping[str, Any]] = {
    "platform_fee_bp": 500,
    "anchor_interval_s": 2.0,
    "anchor_poll_s": 0.5,
    "anchor_confirmations": 2,
    "sequencer_interval": 0.5,
    "acceptance_window_s": 600,
    "auto_accept_interval_s": 5.0,
}
"""How the exchange the demo starts itself differs from the defaults: a 5 % platform
fee (so the split has three parts), anchors every 2 s, final after 2 blocks (1 s
each), a 10-minute acceptance window."""

STEPS: Final = (
    "keys",
    "register",
    "dataset",
    "listing",
    "certificate",
    "agent",
    "deposit",
    "order",
    "deliver",
    "receive",
    "digest",
    "accept",
    "balances",
    "compute",
    "quality",
    "price",
    "policy",
    "payout",
    "anchor",
    "receipts",
    "audit",
    "log",
)
"""The steps :meth:`Demo.run` runs, in order (``exchange`` comes before, in
:func:`demo_exchange`)."""


class DemoFailure(Exception):
    """A step of the story failed: ``step`` names it, ``message`` says what broke."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"demo failed at step {step}: {message}")


class Reporter(Protocol):
    """Where the demo says what it is doing (the CLI draws it with rich)."""

    def started(self, step: str, title: str) -> None: ...

    def progress(self, done: int, total: int | None) -> None: ...

    def finished(self, step: str, seconds: float, detail: str) -> None: ...

    def note(self, text: str) -> None: ...


class SilentReporter:
    """A :class:`Reporter` that says nothing (``--json``, tests)."""

    def started(self, step: str, title: str) -> None:
        pass

    def progress(self, done: int, total: int | None) -> None:
        pass

    def finished(self, step: str, seconds: float, detail: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


# --------------------------------------------------------------------------- the exchange


@dataclass(frozen=True)
class DemoExchange:
    """The exchange the story runs against, the chain its auditor checks, and the
    operator key it signs operator actions with."""

    url: str
    rpc_url: str
    registry_address: str
    operator: SM2PrivateKey
    started_here: bool
    operator_key_file: Path | None = None
    """Where the operator key of an exchange that was already running is (its own
    exchange's operator key is written to ``<work>/keys/operator.pem``)."""
    data_dir: Path | None = None
    """The data directory of the exchange the demo started (``None`` otherwise)."""


class StartedExchange(Protocol):
    """Where an exchange a :class:`LocalExchangeStarter` started answers, and its chain."""

    @property
    def url(self) -> str: ...

    @property
    def rpc_url(self) -> str: ...

    @property
    def registry_address(self) -> str: ...


class LocalExchangeStarter(Protocol):
    """Starts an exchange on this machine (devnet, registry, API) under ``data_dir`` with
    ``operator`` as its operator and ``settings`` (exchange settings fields, e.g.
    :data:`DEMO_EXCHANGE_SETTINGS`); stops everything it started on exit.

    The server's side provides it (``exchange.local_exchange.local_exchange``, handed
    over by the ``shancheng`` entry point); it raises ``OSError`` or ``RuntimeError``
    when the exchange cannot start.
    """

    def __call__(
        self,
        data_dir: Path,
        *,
        operator: SM2PrivateKey,
        block_time: float | None = ...,
        **settings: Any,
    ) -> AbstractContextManager[StartedExchange]: ...


def _probe(url: str) -> Health | None:
    """The exchange's health, or ``None`` when nothing answers at ``url``."""
    with ExchangeClient(url, timeout=3.0, retries=NO_RETRIES) as client:
        try:
            return client.health()
        except TransportError:
            return None
        except ClientError as exc:
            raise DemoFailure(
                "exchange", f"{url} answers, but not as a Shancheng exchange ({exc})"
            ) from None


@contextmanager
def demo_exchange(
    url: str,
    work_dir: Path,
    *,
    operator_key: Path = DEFAULT_OPERATOR_KEY,
    rpc_url: str | None = None,
    registry: str | None = None,
    database_url: str | None = None,
    reporter: Reporter | None = None,
    start_local: LocalExchangeStarter | None = None,
) -> Iterator[DemoExchange]:
    """The exchange at ``url`` if it answers ``/health``, else our own one.

    An exchange that answers must be healthy and have a chain; the operator
    signs with ``operator_key`` (``shancheng run`` creates it) and the auditor
    checks against ``rpc_url``/``registry`` (default: what ``/health`` says).
    Otherwise ``start_local`` starts a devnet (a block a second), the registry
    and the API under ``<work_dir>/exchange`` with a fresh operator key (its
    public key goes into the settings) and :data:`DEMO_EXCHANGE_SETTINGS`; on
    ``database_url`` (else SQLite there). Everything started is stopped on exit.
    Without ``start_local`` an exchange must answer at ``url``.
    """
    say = reporter or SilentReporter()
    health = _probe(url)
    if health is not None:
        if not health.ok:
            detail = health.chain.detail or health.database.detail or "degraded"
            raise DemoFailure("exchange", f"the exchange at {url} is not healthy: {detail}")
        rpc = rpc_url or health.chain.rpc_url
        address = registry or health.chain.registry_address
        if not rpc or not address:
            raise DemoFailure(
                "exchange",
                f"the exchange at {url} anchors to no chain; pass --rpc and --registry",
            )
        try:
            operator = key_from_files(operator_key)
        except ClientError as exc:
            raise DemoFailure(
                "exchange",
                f"{exc} (the operator key of the exchange at {url}: `make run` creates "
                "var/operator-key.pem; pass --operator-key)",
            ) from None
        say.note(f"using the exchange at {url} (operator key {operator_key})")
        yield DemoExchange(
            url, rpc, address, operator, started_here=False, operator_key_file=operator_key
        )
        return

    if start_local is None:
        raise DemoFailure(
            "exchange",
            f"no exchange answers at {url}, and this command cannot start one; "
            "start one with `shancheng run` or pass --exchange",
        )
    operator = SM2PrivateKey.generate()
    data_dir = work_dir.resolve() / "exchange"
    say.note(f"no exchange answers at {url}: starting one under {data_dir}")
    # database_url is passed even when None: our own exchange keeps its SQLite file
    # in the work directory, whatever SHANCHENG_DATABASE_URL the shell has.
    settings: dict[str, Any] = {**DEMO_EXCHANGE_SETTINGS, "database_url": database_url}
    with ExitStack() as stack:
        try:
            local = stack.enter_context(
                start_local(data_dir, operator=operator, block_time=1.0, **settings)
            )
        except (OSError, RuntimeError) as exc:  # DevnetError, DeployError are RuntimeErrors
            raise DemoFailure("exchange", f"could not start a local exchange: {exc}") from None
        yield DemoExchange(
            local.url,
            local.rpc_url,
            local.registry_address,
            operator,
            started_here=True,
            data_dir=data_dir,
        )


# --------------------------------------------------------------------------- the dataset

_STATIONS: Final = (
    # id, name, district, elevation (m)
    ("CQ57516", "沙坪坝", "沙坪坝区", 259),
    ("CQ57511", "北碚", "北碚区", 241),
    ("CQ57512", "渝北", "渝北区", 421),
    ("CQ57513", "渝中解放碑", "渝中区", 245),
    ("CQ57514", "江北观音桥", "江北区", 280),
    ("CQ57515", "南岸南山", "南岸区", 546),
    ("CQ57517", "九龙坡", "九龙坡区", 315),
    ("CQ57518", "巴南", "巴南区", 302),
    ("CQ57519", "大渡口", "大渡口区", 239),
    ("CQ57520", "万州", "万州区", 186),
    ("CQ57521", "涪陵", "涪陵区", 273),
    ("CQ57522", "永川", "永川区", 368),
    ("CQ57523", "合川", "合川区", 231),
    ("CQ57524", "江津", "江津区", 261),
    ("CQ57525", "黔江", "黔江区", 607),
    ("CQ57526", "缙云山", "北碚区", 862),
)
WEATHER_COLUMNS: Final = (
    "station_id",
    "station_name",
    "district",
    "observed_at",
    "temperature_c",
    "humidity_pct",
    "precipitation_mm",
    "wind_speed_ms",
    "aqi",
)
_CST: Final = dt.timezone(dt.timedelta(hours=8))
_EPOCH: Final = dt.datetime(2025, 1, 1, tzinfo=_CST)


def write_weather_csv(
    path: Path, rows: int, seed: int, progress: Callable[[int], None] | None = None
) -> None:
    """Write ``rows`` hourly observations of 16 山城 weather stations to ``path``.

    Deterministic for a given ``seed`` (the same bytes, hence the same SM3):
    synthetic data from :class:`random.Random`, not a secret. Seasonal and
    daily temperature cycles, a lapse rate with elevation, humidity that
    follows rain, a foggy-winter AQI. About 85 bytes a row.
    """
    rng = random.Random(seed)  # noqa: S311 (synthetic data, not a secret)
    stations = len(_STATIONS)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(WEATHER_COLUMNS)
        for row in range(rows):
            station_id, name, district, elevation = _STATIONS[row % stations]
            hour = row // stations
            when = _EPOCH + dt.timedelta(hours=hour)
            day_of_year = hour / 24
            seasonal = 18.5 - 10.5 * math.cos(2 * math.pi * (day_of_year - 15) / 365)
            daily = 4.0 * math.sin(2 * math.pi * ((hour % 24) - 9) / 24)
            temperature = seasonal + daily - (elevation - 250) * 0.0065 + rng.gauss(0, 1.2)
            raining = rng.random() < 0.14
            precipitation = rng.expovariate(0.6) if raining else 0.0
            humidity = min(100, max(35, round(72 + (18 if raining else 0) + rng.gauss(0, 8))))
            wind = max(0.0, rng.gauss(1.8, 0.9))
            winter = math.cos(2 * math.pi * day_of_year / 365)
            aqi = max(12, round(62 + 28 * winter - 10 * precipitation + rng.gauss(0, 14)))
            writer.writerow(
                (
                    station_id,
                    name,
                    district,
                    when.isoformat(),
                    f"{temperature:.1f}",
                    humidity,
                    f"{precipitation:.1f}",
                    f"{wind:.1f}",
                    aqi,
                )
            )
            if progress is not None and row % 5000 == 4999:
                progress(row + 1)
    if progress is not None:
        progress(rows)


# --------------------------------------------------------------------------- money


def tier_price(rows: int) -> int:
    """The price in fen of ``rows`` under :data:`PRICE_TIERS` (graduated, rounded up
    once on the total), computed here so the demo can check the exchange's quote."""
    total_milli = 0  # fen × 1000
    previous = 0
    for tier in PRICE_TIERS:
        bound = tier["up_to_rows"]
        upper = rows if bound is None else min(rows, int(bound))
        if upper > previous:
            total_milli += (upper - previous) * int(tier["price_per_1000_rows"] or 0)
        if bound is None or rows <= int(bound):
            break
        previous = int(bound)
    return -(-total_milli // 1000)


def expected_split(amount: int, fee: int, shares: Mapping[str, int]) -> dict[str, int]:
    """What each provider should get of ``amount − fee`` by ``shares`` (basis
    points), by the rule of ``docs/money.md``: floors, then one fen each to the
    largest remainders (ties by ascending key id). Independent of the server's code."""
    portion = amount - fee
    parts = {key: portion * bp // 10_000 for key, bp in shares.items()}
    left = portion - sum(parts.values())
    by_remainder = sorted(shares, key=lambda key: (-(portion * shares[key] % 10_000), key))
    for key in by_remainder[:left]:
        parts[key] += 1
    return parts


def _yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def _rows(order: StoryOrder) -> str:
    if order.row_offset is None:
        return f"all {order.rows_ordered:,} rows"
    end = order.row_offset + order.rows_ordered
    return f"rows [{order.row_offset:,}, {end:,})"


# --------------------------------------------------------------------------- the story


@dataclass
class StoryRecord:
    """A record the story wrote: which step, what, by whom, and where in the log."""

    step: str
    type: str
    actor: str
    index: int


@dataclass
class StepTiming:
    step: str
    seconds: float
    detail: str


@dataclass
class StoryOrder:
    """One buyer's order: rows bought (``row_offset`` ``None``: the whole dataset),
    rows counted in the decrypted file, where it is, what was paid and settled."""

    buyer: str
    rows_ordered: int
    row_offset: int | None
    id: str = ""
    amount: int = 0
    deposit: int = 0
    rows_delivered: int | None = None
    received: Path | None = None
    settlement: dict[str, Any] | None = None

    def to_dict(self, listing_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "listing": listing_id,
            "buyer": self.buyer,
            "rows_ordered": self.rows_ordered,
            "row_offset": self.row_offset,
            "rows_delivered": self.rows_delivered,
            "amount": self.amount,
            "received": None if self.received is None else str(self.received),
            "settlement": self.settlement,
        }


@dataclass
class DemoResult:
    """What the story did and proved; :meth:`to_dict` is the ``--json`` output."""

    exchange_url: str
    started_exchange: bool
    rpc_url: str
    registry_address: str
    rows: int
    records: list[StoryRecord]
    tree_size: int
    anchors: list[dict[str, Any]]
    audited: int
    log_checks: int
    balances: dict[str, int]
    settlement: dict[str, Any]
    dataset: dict[str, Any]
    orders: list[dict[str, Any]]
    computation: dict[str, Any]
    timings: list[StepTiming]

    @property
    def gas_used(self) -> int:
        return sum(int(a.get("gas_used") or 0) for a in self.anchors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "exchange": {
                "url": self.exchange_url,
                "started_by_demo": self.started_exchange,
                "rpc_url": self.rpc_url,
                "registry_address": self.registry_address,
            },
            "dataset": self.dataset,
            "orders": self.orders,
            "computation": self.computation,
            "records": [vars(r) for r in self.records],
            "records_written": len(self.records),
            "tree_size": self.tree_size,
            "anchors": self.anchors,
            "gas_used": self.gas_used,
            "receipts_verified": self.audited,
            "log_checks": self.log_checks,
            "settlement": self.settlement,
            "balances": self.balances,
            "timings": [{"step": t.step, "seconds": round(t.seconds, 3)} for t in self.timings],
        }


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _log_index(step: str, what: str, result: Any) -> int:
    log = getattr(result, "log", None)
    if log is None:
        raise DemoFailure(step, f"the exchange's answer to {what} carries no log receipt")
    return int(log.index)


def _data_rows(path: Path) -> int:
    """Rows of a CSV file, not counting its header line."""
    with path.open(newline="", encoding="utf-8") as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)


def bought_slice(rows: int) -> tuple[int, int]:
    """The rows buyer 1 buys of a ``rows``-row dataset: ``(offset, count)``, 20,000
    rows from a quarter in (of 100,000: rows [25,000, 45,000)), a fifth of a smaller one."""
    count = min(SLICE_ROWS, max(1, rows // 5))
    return min(rows // 4, rows - count), count


_PARTICIPANTS: Final = {
    "provider_a": ("山城气象数据有限公司", "provider"),
    "provider_b": ("重庆江北观测站联盟", "provider"),
    "buyer_1": ("两江新区交通规划院", "buyer"),
    "buyer_2": ("重庆大学气候研究所", "buyer"),
    "buyer_3": ("山城智慧城市研究院", "buyer"),
    "auditor": ("山城审计事务所", "auditor"),
    "assessor": ("重庆数据资产评估中心", "assessor"),
}
"""Who takes part besides the operator: name and role."""


class Demo:
    """One run of the story against ``exchange``, with files under ``work_dir``.

    The attributes filled by each step (``listing_id``, ``orders``, ``agent``,
    ``bundles``, …) are public, so a hook given to :meth:`run` can look at them or
    change them. :meth:`close` stops the provider agent the story started.
    """

    def __init__(
        self,
        exchange: DemoExchange,
        work_dir: Path,
        *,
        rows: int = DEFAULT_ROWS,
        seed: int = DEFAULT_SEED,
        anchor_timeout: float = 300.0,
        reporter: Reporter | None = None,
        timeout: float = 60.0,
        delivery_timeout: float = 120.0,
    ) -> None:
        if rows < 1:
            raise ValueError("the dataset needs at least one row")
        self.exchange = exchange
        # absolute: the agent runs in it, and story.json's paths work from anywhere
        self.work_dir = work_dir.resolve()
        self.rows = rows
        self.seed = seed
        self.anchor_timeout = anchor_timeout
        self.timeout = timeout
        self.delivery_timeout = delivery_timeout
        self.say: Reporter = reporter or SilentReporter()
        self.records: list[StoryRecord] = []
        self.timings: list[StepTiming] = []
        self.clients: dict[str, ExchangeClient] = {}
        self.keys: dict[str, SM2PrivateKey] = {"operator": exchange.operator}
        self.key_files: dict[str, Path] = {}
        if exchange.operator_key_file is not None:
            self.key_files["operator"] = exchange.operator_key_file.resolve()
        self.csv_path = self.work_dir / "shancheng-weather.csv"
        self.download_dir = self.work_dir / "download"
        self.agent_state_dir = self.work_dir / "agent"
        self.agent_log = self.work_dir / "agent.log"
        self.agent: subprocess.Popen[bytes] | None = None
        self.description: DatasetDescription | None = None
        self.listing_id = ""
        self.listing_title = ""
        self.computation_listing_id = ""
        self.computation: dict[str, Any] = {}
        self.version = 1
        self.content_digest = ""
        self.row_root = ""
        offset, count = bought_slice(rows)
        self.orders: dict[str, StoryOrder] = {
            "buyer_1": StoryOrder("buyer_1", count, offset),
            "buyer_2": StoryOrder("buyer_2", rows, None),
        }
        self.received: dict[str, Received] = {}
        self.settlement: dict[str, Any] = {}
        self.balances: dict[str, int] = {}
        self.bundles: dict[int, Bundle] = {}
        self.anchors: list[dict[str, Any]] = []
        self.log_checks = 0
        self.tree_size = 0
        self.quality_grade = ""
        self.certificate_number = ""
        self.paid_out = 0
        """Fen provider A withdrew and the operator paid (the ``payout`` step)."""
        self.reference_price: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing

    def client(self, who: str) -> ExchangeClient:
        return self.clients[who]

    @staticmethod
    def _made_by(value: T | None, step: str) -> T:
        """``value``, which step ``step`` makes; a step run before it fails here."""
        if value is None:
            raise DemoFailure(step, f"run the {step} step first")
        return value

    def key_id(self, who: str) -> str:
        return self.keys[who].key_id()

    def _record(self, step: str, type_: str, who: str, result: Any) -> Any:
        self.records.append(StoryRecord(step, type_, who, _log_index(step, type_, result)))
        return result

    def stop_agent(self) -> None:
        """Stop the provider agent (SIGTERM: it finishes the delivery in progress)."""
        agent, self.agent = self.agent, None
        if agent is None or agent.poll() is not None:
            return
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()

    def close(self) -> None:
        self.stop_agent()
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, *, after: Mapping[str, Callable[[Demo], None]] | None = None) -> DemoResult:
        """Run every step of :data:`STEPS`; ``after[step](demo)`` runs right after
        that step. Raises :class:`DemoFailure` at the first step that fails."""
        hooks = dict(after or {})
        unknown = set(hooks) - set(STEPS)
        if unknown:
            raise ValueError(f"no such step: {', '.join(sorted(unknown))}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for step in STEPS:
            self.run_step(step)
            if step in hooks:
                hooks[step](self)
        return self.result()

    def run_step(self, step: str) -> None:
        method: Callable[[], str] = getattr(self, f"step_{step}")
        title = (method.__doc__ or step).strip().splitlines()[0]
        self.say.started(step, title)
        began = time.monotonic()
        try:
            detail = method()
        except DemoFailure:
            raise
        except APIError as exc:
            raise DemoFailure(step, f"the exchange refused: {exc}") from exc
        except (ClientError, AuditError, AuditInconclusiveError, VerificationError) as exc:
            raise DemoFailure(step, str(exc)) from exc
        except (OSError, DatasetError) as exc:
            raise DemoFailure(step, str(exc)) from exc
        seconds = time.monotonic() - began
        self.timings.append(StepTiming(step, seconds, detail))
        self.say.finished(step, seconds, detail)

    def result(self) -> DemoResult:
        return DemoResult(
            exchange_url=self.exchange.url,
            started_exchange=self.exchange.started_here,
            rpc_url=self.exchange.rpc_url,
            registry_address=self.exchange.registry_address,
            rows=self.rows,
            records=list(self.records),
            tree_size=self.tree_size,
            anchors=list(self.anchors),
            audited=len(self.bundles),
            log_checks=self.log_checks,
            balances=dict(self.balances),
            settlement=dict(self.settlement),
            dataset={
                "path": str(self.csv_path),
                "rows": self.rows,
                "bytes": self.description.byte_size if self.description else None,
                "sm3": self.content_digest,
                "row_root": self.row_root,
                "listing_id": self.listing_id,
            },
            orders=[order.to_dict(self.listing_id) for order in self.orders.values()],
            computation=dict(self.computation),
            timings=list(self.timings),
        )

    def story(self) -> dict[str, Any]:
        """Where everything is, so a person can go on by hand as any participant
        (``story.json`` of ``shancheng demo --keep-running``)."""
        roles = {"operator": "operator"} | {who: role for who, (_, role) in _PARTICIPANTS.items()}
        return {
            "exchange_url": self.exchange.url,
            "rpc_url": self.exchange.rpc_url,
            "registry": self.exchange.registry_address,
            "started_exchange": self.exchange.started_here,
            "exchange_data_dir": (
                None if self.exchange.data_dir is None else str(self.exchange.data_dir)
            ),
            "participants": {
                who: {
                    "key_file": str(self.key_files[who]) if who in self.key_files else None,
                    "key_id": key.key_id(),
                    "role": roles[who],
                }
                for who, key in self.keys.items()
            },
            "agent": {
                "pid": None if self.agent is None else self.agent.pid,
                "state_dir": str(self.agent_state_dir),
                "log": str(self.agent_log),
            },
            "dataset": {"path": str(self.csv_path), "rows": self.rows, "sm3": self.content_digest},
            "listings": [
                {"id": self.listing_id, "title": self.listing_title, "custody": "provider"},
                {
                    "id": self.computation_listing_id,
                    "title": f"{self.listing_title} · 可用不可见",
                    "custody": "provider",
                    "computation": True,
                },
            ],
            "orders": [order.to_dict(self.listing_id) for order in self.orders.values()],
        }

    def write_story(self, path: Path) -> None:
        """Write :meth:`story` to ``path`` (atomically)."""
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(self.story(), indent=2, ensure_ascii=False) + "\n")
        temporary.replace(path)

    # ------------------------------------------------------------------ steps

    def step_keys(self) -> str:
        """SM2 keys for two co-providers, two buyers and an auditor"""
        keys_dir = self.work_dir / "keys"
        keys_dir.mkdir(parents=True, exist_ok=True)
        for who in _PARTICIPANTS:
            self.keys[who] = SM2PrivateKey.generate()
        if "operator" not in self.key_files:  # our own exchange's operator: keep its key too
            self.key_files["operator"] = keys_dir / "operator.pem"
        for who, key in self.keys.items():
            self.key_files.setdefault(who, keys_dir / f"{who}.pem")
            if self.key_files[who].parent == keys_dir:
                _write_private(self.key_files[who], key.to_pem())
            self.clients[who] = ExchangeClient(self.exchange.url, key=key, timeout=self.timeout)
        return (
            f"{len(_PARTICIPANTS)} new keys in {keys_dir}; operator {self.key_id('operator')[:12]}…"
        )

    def step_register(self) -> str:
        """Participants register; the operator approves the providers"""
        for who, (name, role) in _PARTICIPANTS.items():
            participant = self.client(who).register(name, role)
            self._record("register", "participant.registered", who, participant)
        for who in ("provider_a", "provider_b", "assessor"):
            try:
                approved = self.client("operator").approve_participant(self.key_id(who))
            except APIError as exc:
                if exc.status_code not in (401, 403):
                    raise
                raise DemoFailure(
                    "register",
                    f"the exchange does not take key {self.key_id('operator')[:12]}… as an "
                    f"operator ({exc.code}); pass its operator key with --operator-key",
                ) from exc
            self._record("register", "participant.approved", "operator", approved)
        return "2 providers and an assessor (approved), 3 buyers and an auditor"

    def step_dataset(self) -> str:
        """Generate the CSV and describe it (one streamed pass: SM3, rows, row root, schema)"""
        from clients.datasets import describe_file

        write_weather_csv(self.csv_path, self.rows, self.seed, progress=self._rows_progress)
        size = self.csv_path.stat().st_size
        self.description = describe_file(
            self.csv_path, progress=lambda done: self.say.progress(done, size)
        )
        if self.description.row_count != self.rows or not self.description.row_root:
            raise DemoFailure(
                "dataset",
                f"describe_file counted {self.description.row_count} rows "
                f"(row root {self.description.row_root}), wrote {self.rows}",
            )
        self.content_digest = self.description.sm3
        self.row_root = self.description.row_root
        return (
            f"{self.rows:,} rows, {size:,} bytes, SM3 {self.content_digest[:16]}…, "
            f"row root {self.row_root[:16]}…"
        )

    def _rows_progress(self, done: int) -> None:
        self.say.progress(done, self.rows)

    def listing_fields(self) -> dict[str, Any]:
        """The listing provider A drafts: the described file plus terms and prices,
        in provider custody (the data stays with A's agent)."""
        description = self._made_by(self.description, "dataset")
        fields: dict[str, Any] = {
            "title": "山城气象站逐时观测 2025",
            "description": "Hourly observations of 16 weather stations in Chongqing (山城): "
            "temperature, humidity, precipitation, wind and AQI. Synthetic demo data.",
            "category": "weather",
            "tags": ["山城", "气象", "chongqing", "weather", "hourly"],
            "providers": [
                {"key_id": self.key_id("provider_a"), "share_bps": SHARE_A_BP},
                {"key_id": self.key_id("provider_b"), "share_bps": SHARE_B_BP},
            ],
            "update_frequency": "hourly",
            "licence": "Shancheng standard data licence v1",
            "usage_terms": "Research and planning; no resale.",
            "pricing": {"model": "tiers", "tiers": [dict(t) for t in PRICE_TIERS]},
            "declarations": {
                "classification": "一般",
                "personal_information": False,
                "source_legality": "Observed by the providers' own stations (demo data).",
                "permitted_purposes": ["research", "planning"],
            },
            "custody": "provider",
            "row_root": description.row_root,
            "cost_basis": dict(COST_BASIS),
            "policy": dict(USAGE_POLICY),
        }
        fields.update(description.to_listing_fields())
        fields["sample_rows"] = fields["sample_rows"][:SAMPLE_ROWS]
        return fields

    def step_listing(self) -> str:
        """Provider A lists it with B as co-provider; the operator reviews and publishes"""
        provider, operator = self.client("provider_a"), self.client("operator")
        fields = self.listing_fields()
        listing = provider.create_listing(fields)
        self.listing_id, self.listing_title = listing.id, fields["title"]
        self._record("listing", "listing.drafted", "provider_a", listing)
        self._record(
            "listing", "listing.submitted", "provider_a", provider.submit_listing(self.listing_id)
        )
        self._record(
            "listing",
            "listing.review_started",
            "operator",
            operator.review_listing(self.listing_id),
        )
        published = operator.publish_listing(self.listing_id)
        self._record("listing", "listing.published", "operator", published)
        self.version = published.version
        self.computation_listing_id = self._publish_computation_listing(fields)
        shares = f"A {SHARE_A_BP // 100} %, B {SHARE_B_BP // 100} %"
        return (
            f"listing {self.listing_id} published in provider custody ({shares}); "
            f"computations only: {self.computation_listing_id}"
        )

    def step_certificate(self) -> str:
        """The exchange registered the published listing: its certificate names the
        content, the row root and the holders of the three rights (持有权, 加工使用权, 经营权)"""
        buyer = self.client("buyer_1")
        number = buyer.listing(self.listing_id).certificate
        if number is None:
            raise DemoFailure("certificate", "the published listing carries no certificate")
        certificate = buyer.certificate(number)
        expected = {self.key_id("provider_a"): SHARE_A_BP, self.key_id("provider_b"): SHARE_B_BP}
        for right, holders in certificate.rights.items():
            if {h.participant: h.share_bps for h in holders} != expected:
                raise DemoFailure("certificate", f"the {right} right is held by {holders}")
        if (certificate.content_digest, certificate.row_root) != (
            self.content_digest,
            self.row_root,
        ):
            raise DemoFailure("certificate", "the certificate names other content")
        issued = [r for r in certificate.history if r.type == "certificate.issued"]
        if len(issued) != 1:
            raise DemoFailure("certificate", f"{len(issued)} certificate.issued records")
        self.records.append(
            StoryRecord("certificate", "certificate.issued", "exchange", issued[0].index)
        )
        self.certificate_number = number
        until = dt.datetime.fromtimestamp(certificate.valid_until / 1000, dt.UTC).date()
        return (
            f"{number} for version {certificate.version}: all three rights A 70 % / B 30 %, "
            f"valid until {until.isoformat()}, {certificate.state}"
        )

    def _publish_computation_listing(self, fields: Mapping[str, Any]) -> str:
        """The same file offered for computations only: buyers never see its rows."""
        provider, operator = self.client("provider_a"), self.client("operator")
        offer = ComputationOffer.from_dict(dict(COMPUTATION_OFFER))
        listing = provider.create_listing(
            {
                **fields,
                "title": f"{fields['title']} · 可用不可见",
                "description": "Averages and counts of the temperature by district and "
                "month, computed by the provider's agent; groups under 10 rows are "
                "suppressed and every answer carries Laplace noise. No row leaves the "
                "provider.",
                "sample_rows": [],
                "pricing": {"model": "fixed", "price": 0},
                "computation": offer.to_dict(),
            }
        )
        self._record("listing", "listing.drafted", "provider_a", listing)
        steps = (
            ("provider_a", "listing.submitted", provider.submit_listing),
            ("operator", "listing.review_started", operator.review_listing),
            ("operator", "listing.published", operator.publish_listing),
        )
        for who, record_type, act in steps:
            self._record("listing", record_type, who, act(listing.id))
        return listing.id

    def step_agent(self) -> str:
        """Provider A starts its agent beside the data (its own process, outbound only)"""
        self.agent_state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "clients.cli", "provider", "agent",
            "--exchange-url", self.exchange.url,
            "--key-file", str(self.key_files["provider_a"]),
            "--state-dir", str(self.agent_state_dir),
            "--dataset", f"{self.listing_id}={self.csv_path}",
            "--dataset", f"{self.computation_listing_id}={self.csv_path}",
        ]  # fmt: skip
        # the agent runs this very code, wherever it was imported from
        code_root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p)
        # its own session: a Ctrl-C in the terminal reaches the demo, which stops it;
        # and it dies with the demo, should the demo itself be killed
        with self.agent_log.open("ab") as log:
            self.agent = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path}, cwd=self.work_dir,
                start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        deadline = time.monotonic() + self.delivery_timeout
        while _AGENT_READY not in self.agent_log.read_text("utf-8", errors="replace"):
            self._check_agent("agent")
            if time.monotonic() > deadline:
                raise DemoFailure(
                    "agent", f"the agent did not start within {self.delivery_timeout:.0f} s"
                )
            time.sleep(0.1)
        return f"pid {self.agent.pid} serves {self.csv_path.name}; log {self.agent_log}"

    def _check_agent(self, step: str) -> None:
        agent = self._made_by(self.agent, "agent")
        code = agent.poll()
        if code is not None:
            lines = self.agent_log.read_text("utf-8", errors="replace").strip().splitlines()
            last = lines[-1] if lines else "(no output)"
            raise DemoFailure(step, f"the provider agent exited ({code}): {last}")

    def step_deposit(self) -> str:
        """The operator credits both buyers"""
        for who, order in self.orders.items():
            price = tier_price(order.rows_ordered)
            order.deposit = -(-price // 10_000) * 10_000 + 10_000  # the price, rounded up, + ¥100
            deposited = self.client("operator").deposit(
                self.key_id(who),
                order.deposit,
                f"demo bank transfer {uuid.uuid4()}",
                idempotency_key=str(uuid.uuid4()),
            )
            self._record("deposit", "deposit.credited", "operator", deposited)
        return ", ".join(f"{_yuan(o.deposit)} to {who}" for who, o in self.orders.items())

    def step_order(self) -> str:
        """The buyers search and quote; buyer 1 orders a slice of rows, buyer 2 all of them"""
        for who, order in self.orders.items():
            buyer = self.client(who)
            page = buyer.search("山城 气象", provider=self.key_id("provider_a"))
            if not any(item.id == self.listing_id for item in page.items):
                raise DemoFailure(
                    "order", f"searching for 山城 气象 does not find {self.listing_id}"
                )
            listing = buyer.listing(self.listing_id)
            if (listing.custody, listing.content_digest, listing.row_root) != (
                "provider",
                self.content_digest,
                self.row_root,
            ):
                raise DemoFailure(
                    "order",
                    f"the published listing says custody {listing.custody}, digest "
                    f"{listing.content_digest}, row root {listing.row_root}; the provider's "
                    f"file is {self.content_digest}, {self.row_root}",
                )
            terms: dict[str, Any] = {"rows": order.rows_ordered}
            if order.row_offset is not None:
                terms["row_offset"] = order.row_offset
            quote = buyer.quote(self.listing_id, **terms)
            expected = tier_price(order.rows_ordered)
            if quote.amount != expected:
                raise DemoFailure(
                    "order",
                    f"quoted {quote.amount} fen for {order.rows_ordered} rows, "
                    f"tiers say {expected}",
                )
            placed = buyer.place_order(quote, idempotency_key=str(uuid.uuid4()))
            order.id, order.amount = placed.id, expected
            self._record("order", "order.placed", who, placed)
        return "; ".join(
            f"{who} {_rows(o)}: {_yuan(o.amount)} in escrow" for who, o in self.orders.items()
        )

    def step_deliver(self) -> str:
        """The agent cuts, encrypts to each buyer and delivers; the provider signs each delivery"""
        deadline = time.monotonic() + self.delivery_timeout
        pending = dict(self.orders)
        while pending:
            for who, order in list(pending.items()):
                if self.client(who).order(order.id).state != "placed":
                    del pending[who]
                    delivery = self.client(who).delivery(order.id)
                    self.records.append(
                        StoryRecord("deliver", "delivery.issued", "provider_a", delivery.log_index)
                    )
            if not pending:
                break
            self._check_agent("deliver")
            if time.monotonic() > deadline:
                waiting = ", ".join(o.id for o in pending.values())
                raise DemoFailure(
                    "deliver", f"not delivered within {self.delivery_timeout:.0f} s: {waiting}"
                )
            time.sleep(0.2)
        return f"{len(self.orders)} deliveries signed by provider A"

    def step_receive(self) -> str:
        """Each buyer receives and checks (provider signature, ciphertext, decryption,
        range proof or whole-file SM3) and counts the rows delivered"""
        self.download_dir.mkdir(parents=True, exist_ok=True)
        for who, order in self.orders.items():
            out = self.download_dir / f"{who}.csv"
            try:
                self.received[who] = self.client(who).receive(
                    order.id, out, progress=self.say.progress
                )
            except DeliveryCheckError as exc:
                raise DemoFailure(
                    "receive", f"{who}'s delivery failed the check {exc.check}: {exc.message}"
                ) from exc
            order.received = out
            order.rows_delivered = _data_rows(out)
            if order.rows_delivered != order.rows_ordered:
                raise DemoFailure(
                    "receive",
                    f"{who} ordered {order.rows_ordered} rows, the file has {order.rows_delivered}",
                )
        return "; ".join(f"{who} {_rows(o)} verified" for who, o in self.orders.items())

    def step_digest(self) -> str:
        """Check each file on disk once more against what the provider signed"""
        for who, order in self.orders.items():
            path = self._made_by(order.received, "receive")
            delivery = self.received[who].delivery
            # all the rows (buyer 2) are the provider's very file: the listing's SM3
            if order.row_offset is None:
                actual = sm3_file(path).hex()
                if actual != self.content_digest:
                    raise DemoFailure(
                        "digest",
                        f"SM3 of {path} is {actual}, the listing commits to {self.content_digest}",
                    )
            if delivery.rows is None:
                continue
            proof = self._made_by(delivery.range_proof, "receive")
            try:
                verify_slice(
                    path,
                    delivery.rows.offset,
                    delivery.rows.count,
                    self.rows,
                    bytes.fromhex(self.row_root),
                    [bytes.fromhex(node) for node in proof.proof],
                    format="csv",
                )
            except SliceCheckError as exc:
                raise DemoFailure(
                    "digest", f"{path} is not the rows bought ({exc.check}): {exc}"
                ) from exc
        return f"the listing's SM3 and the range proofs hold (row root {self.row_root[:16]}…)"

    def step_accept(self) -> str:
        """The buyers accept; the exchange settles (split between A, B and the platform)"""
        for who, order in self.orders.items():
            accepted = self.client(who).accept(order.id)
            self._record("accept", "order.accepted", who, accepted)
            settlement = accepted.settlement
            if settlement is None:
                raise DemoFailure("accept", f"order {order.id} was accepted but not settled")
            self._record("accept", "settlement.paid", "exchange", settlement)
            order.settlement = {
                "amount": int(settlement.amount),
                "platform_fee": int(settlement.platform_fee),
                "payouts": {k: int(v) for k, v in settlement.payouts.items()},
            }
        settlements = [self._made_by(o.settlement, "accept") for o in self.orders.values()]
        payouts: dict[str, int] = {}
        for settled in settlements:
            for key, value in settled["payouts"].items():
                payouts[key] = payouts.get(key, 0) + value
        self.settlement = {
            "amount": sum(s["amount"] for s in settlements),
            "platform_fee": sum(s["platform_fee"] for s in settlements),
            "payouts": payouts,
        }
        return (
            f"settled {_yuan(self.settlement['amount'])} in {len(settlements)} orders: "
            f"fee {_yuan(self.settlement['platform_fee'])}"
        )

    def step_balances(self) -> str:
        """Check each settlement and every balance against the split computed here"""
        a, b = self.key_id("provider_a"), self.key_id("provider_b")
        shares = {a: SHARE_A_BP, b: SHARE_B_BP}
        problems = []
        expected_total = {a: 0, b: 0}
        platform = self.client("operator").account(PLATFORM_ACCOUNT, limit=500)
        self.balances = {}
        for who, order in self.orders.items():
            settled = self._made_by(order.settlement, "accept")
            amount, fee = order.amount, settled["platform_fee"]
            if settled["amount"] != amount:
                problems.append(f"{who}: settled {settled['amount']} fen, the price is {amount}")
            if not 0 <= fee < amount:
                problems.append(f"{who}: platform fee {fee} out of range")
            expected = expected_split(amount, fee, shares)
            if settled["payouts"] != expected:
                problems.append(f"{who}: payouts {settled['payouts']} differ from {expected}")
            for key in expected_total:
                expected_total[key] += expected[key]
            # the platform account collects every sale's fee: read this order's movements
            fee_received = sum(
                m.amount for m in platform.movements if m.order_id == order.id and m.kind == "fee"
            )
            if fee_received != fee:
                problems.append(f"{who}: the platform received {fee_received} fen, not {fee}")
            account = self.client(who).account()
            self.balances[who] = int(account.available)
            self.balances[f"{who}_held"] = int(account.held)
            self.balances[f"{who}_deposited"] = order.deposit
            self.balances["platform"] = self.balances.get("platform", 0) + fee_received
            problems += [
                f"{what} is {got} fen, expected {want}"
                for what, got, want in (
                    (f"{who} available", int(account.available), order.deposit - amount),
                    (f"{who} held", int(account.held), 0),
                )
                if got != want
            ]
        self.balances["provider_a"] = int(self.client("provider_a").account().available)
        self.balances["provider_b"] = int(self.client("provider_b").account().available)
        problems += [
            f"{what} available is {got} fen, expected {want}"
            for what, got, want in (
                ("provider A", self.balances["provider_a"], expected_total[a]),
                ("provider B", self.balances["provider_b"], expected_total[b]),
            )
            if got != want
        ]
        deposited = sum(o.deposit for o in self.orders.values())
        held = ("provider_a", "provider_b", "platform", *self.orders)
        total = sum(self.balances[k] for k in held)
        if total != deposited:
            problems.append(f"balances sum to {total} fen, {deposited} were deposited")
        if problems:
            raise DemoFailure("balances", "; ".join(problems))
        return (
            f"A {_yuan(expected_total[a])} + B {_yuan(expected_total[b])} + platform "
            f"{_yuan(self.balances['platform'])} = {_yuan(self.settlement['amount'])}"
        )

    def step_compute(self) -> str:
        """Buyer 3 buys queries and asks for the average temperature by district and
        month; the agent answers without a row leaving; raw rows are refused"""
        buyer, operator = self.client("buyer_3"), self.client("operator")
        listing_id = self._made_by(self.computation_listing_id or None, "listing")
        price = COMPUTATION_QUERIES * int(COMPUTATION_OFFER["price"]["fen"])
        deposited = operator.deposit(
            self.key_id("buyer_3"),
            price,
            f"demo bank transfer {uuid.uuid4()}",
            idempotency_key=str(uuid.uuid4()),
        )
        self._record("compute", "deposit.credited", "operator", deposited)
        quote = buyer.quote(listing_id, computation=True, queries=COMPUTATION_QUERIES)
        if quote.amount != price:
            raise DemoFailure("compute", f"quoted {quote.amount} fen, the offer says {price}")
        order = buyer.place_order(quote, idempotency_key=str(uuid.uuid4()))
        self._record("compute", "order.placed", "buyer_3", order)
        asked = buyer.request_computation(order.id, COMPUTATION_SQL)
        self._record("compute", "computation.requested", "buyer_3", asked)
        answer = buyer.query_answer(asked.id, timeout=self.delivery_timeout)
        self.records.append(
            StoryRecord("compute", "computation.completed", "provider_a", answer.log_index)
        )
        if answer.columns != ("district", "month", "avg_t"):
            raise DemoFailure("compute", f"the answer has columns {answer.columns}")
        if answer.rows_scanned != self.rows or answer.provider != self.key_id("provider_a"):
            raise DemoFailure(
                "compute",
                f"the answer scanned {answer.rows_scanned} rows, signed by {answer.provider}",
            )
        try:
            buyer.query(order.id, RAW_ROWS_SQL, timeout=self.timeout)
        except QueryRefusedError as refused:
            reason = refused.reason
        else:
            raise DemoFailure("compute", f"{RAW_ROWS_SQL!r} was answered")
        asked_count = len(buyer.computations(order.id).items)
        if asked_count != 1:  # the refused question left no computation behind
            raise DemoFailure("compute", f"order {order.id} has {asked_count} computations")
        self.computation = {
            "listing": listing_id,
            "order": order.id,
            "buyer": "buyer_3",
            "sql": COMPUTATION_SQL,
            "columns": list(answer.columns),
            "groups": len(answer.rows),
            "first_rows": [list(row) for row in answer.rows[:3]],
            "rows_scanned": answer.rows_scanned,
            "epsilon_spent": str(answer.epsilon_spent),
            "refused": {"sql": RAW_ROWS_SQL, "reason": reason},
        }
        example = ""
        if answer.rows:
            district, month, avg = answer.rows[0]
            example = f" (e.g. {district} month {month}: {float(str(avg)):.1f} °C)"
        return (
            f"{len(answer.rows)} groups from {answer.rows_scanned:,} rows, ε "
            f"{answer.epsilon_spent}{example}; {RAW_ROWS_SQL!r} refused: {reason}"
        )

    def step_quality(self) -> str:
        """Provider A reports the data's quality (GB/T 36344) from its own machine; an
        assessor obtains the data through a zero-price order, recomputes and countersigns"""
        from clients.quality import compute_report
        from ledger.protocol.quality import TableSchema

        self._check_agent("quality")
        report = compute_report(
            self.csv_path,
            TableSchema.from_dict(dict(QUALITY_SCHEMA)),
            update_frequency="hourly",
            as_of=int(time.time() * 1000),
        )
        reported = self.client("provider_a").report_quality(self.listing_id, report)
        self._record("quality", "quality.reported", "provider_a", reported)
        assessment = self.client("assessor").assess(
            self.listing_id, self.work_dir / "assessment", delivery_wait=self.delivery_timeout
        )
        if not assessment.agreed:
            raise DemoFailure(
                "quality", "the assessor's recomputation differs from the provider's report"
            )
        self.records.append(
            StoryRecord("quality", "quality.countersigned", "assessor", assessment.log.index)
        )
        quality = self.client("buyer_1").listing_quality(self.listing_id).quality
        if quality is None or quality.countersigned_by != (self.key_id("assessor"),):
            raise DemoFailure("quality", f"the listing shows {quality}, not the countersignature")
        self.quality_grade = quality.grade
        return (
            f"grade {quality.grade} ({quality.score_bps / 100:.2f} of 100), report SM3 "
            f"{reported.report_sm3[:16]}…, countersigned by the assessor after its own "
            f"0-fen assessment order {assessment.order_id[:8]}…"
        )

    def step_price(self) -> str:
        """The listing's reference price: the cost method from the provider's declared
        costs, the market method from comparable settled deals, where the asking price falls"""
        answer = self.client("buyer_1").reference_price(self.listing_id)
        cost, market, asking = answer["cost"], answer["market"], answer["asking"]
        if cost is None or asking is None or market is None:
            raise DemoFailure("price", f"the reference price is incomplete: {answer}")
        basis = dict(COST_BASIS)
        total = sum(v for k, v in basis.items() if k.endswith("_fen"))
        if cost["low"] != -(-total // basis["expected_units"]):
            raise DemoFailure("price", f"cost method low {cost['low']} fen, expected break-even")
        self.reference_price = answer
        position = asking["position"]["cost"]
        if market["status"] == "ok":
            market_text = f"market {_yuan(market['low'])}–{_yuan(market['high'])}"
        else:
            market_text = f"market: {market['status'].replace('_', ' ')}"
        cost_text = f"cost {_yuan(cost['low'])}–{_yuan(cost['high'])}"
        return (
            f"unit {answer['unit']}: {cost_text}, {market_text}; "
            f"asking {_yuan(asking['unit_price_fen'])} is {position} the cost range"
        )

    def step_policy(self) -> str:
        """The listing's usage policy is enforced: an order declaring marketing use is
        refused, naming the clause, and nothing moves"""
        buyer = self.client("buyer_1")
        before = buyer.account()
        quote = buyer.quote(self.listing_id, rows=min(1_000, self.rows))
        try:
            buyer.place_order(quote, purpose="marketing", region="CN")
        except APIError as exc:
            if exc.code != "policy_violation":
                raise
            refusal = str(exc.message)
        else:
            raise DemoFailure("policy", "an order declaring marketing use was accepted")
        after = buyer.account()
        if (after.available, after.held) != (before.available, before.held):
            raise DemoFailure("policy", "the refused order moved money")
        return f"422 policy_violation: {refusal}; buyer 1's balance unchanged"

    def step_payout(self) -> str:
        """Provider A withdraws its earnings: the amount is held until the operator
        records the bank transfer paid"""
        provider, operator = self.client("provider_a"), self.client("operator")
        available = int(provider.account().available)
        # whole hundreds of yuan when A earned that much (the story's own data), else half
        amount = available - available % 10_000 or available // 2
        if amount <= 0:
            raise DemoFailure("payout", f"provider A has {_yuan(available)} to withdraw")
        requested = provider.withdraw(
            amount, "demo bank account 6222 0000 0000 0001", idempotency_key=str(uuid.uuid4())
        )
        self._record("payout", "withdrawal.requested", "provider_a", requested)
        held = provider.account()
        if (int(held.available), int(held.held)) != (available - amount, amount):
            raise DemoFailure("payout", f"after the request: {held.available} / {held.held}")
        pending = [w.id for w in operator.withdrawals(state="pending").items]
        if requested.id not in pending:
            raise DemoFailure("payout", "the operator does not see the pending withdrawal")
        paid = operator.pay_withdrawal(
            requested.id,
            f"demo transfer {uuid.uuid4().hex[:12]}",
            idempotency_key=str(uuid.uuid4()),
        )
        self._record("payout", "withdrawal.paid", "operator", paid)
        self.paid_out = amount
        after = provider.account()
        if (int(after.available), int(after.held)) != (available - amount, 0):
            raise DemoFailure("payout", f"after payment: {after.available} / {after.held}")
        return (
            f"{_yuan(amount)} of A's {_yuan(available)} held, then paid by the operator "
            f"({paid.transfer_reference}); {_yuan(available - amount)} left available"
        )

    def step_anchor(self) -> str:
        """Wait until an anchor covering the last record is final on chain"""
        auditor = self.client("auditor")
        last = max(r.index for r in self.records)
        self.say.note(
            f"waiting for the exchange to anchor record {last} and for the anchor to become "
            "final (an exchange started by `make run` anchors every 10 s)"
        )
        deadline = time.monotonic() + self.anchor_timeout
        while True:
            covering = [a for a in auditor.anchors(start=last + 1) if a.state == "final"]
            if covering:
                anchor = covering[0]
                return f"tree size {anchor.tree_size} final in block {anchor.block_number}"
            if time.monotonic() > deadline:
                raise DemoFailure(
                    "anchor",
                    f"no final anchor covers record {last} after {self.anchor_timeout:.0f} s",
                )
            time.sleep(0.5)

    def step_receipts(self) -> str:
        """The auditor fetches the receipt bundle of every record of the story"""
        auditor = self.client("auditor")
        for position, record in enumerate(self.records):
            self.bundles[record.index] = auditor.wait_for_receipt(record.index, timeout=60)
            self.say.progress(position + 1, len(self.records))
        return f"{len(self.bundles)} bundles"

    def step_audit(self) -> str:
        """Verify every receipt against the chain (as `shancheng audit verify` does)"""
        from contracts.chain import ChainClient

        auditor = self.client("auditor")
        tx_hashes: dict[str, dict[str, Any]] = {}
        for position, (index, bundle) in enumerate(sorted(self.bundles.items())):
            try:
                auditor.verify_receipt(
                    bundle, self.exchange.rpc_url, self.exchange.registry_address
                )
            except AuditError as exc:
                text = (
                    f"receipt {index} ({bundle.record.record.type}): step {exc.step}: {exc.message}"
                )
                if exc.expected is not None or exc.actual is not None:
                    text += f" (expected {exc.expected}, actual {exc.actual})"
                raise DemoFailure("audit", text) from exc
            anchor = bundle.anchor
            tx_hashes.setdefault(
                anchor.tx_hash,
                {
                    "tx_hash": anchor.tx_hash,
                    "block_number": anchor.block_number,
                    "tree_size": bundle.checkpoint.tree_size,
                    "records": 0,
                },
            )["records"] += 1
            self.say.progress(position + 1, len(self.bundles))
        chain = ChainClient(self.exchange.rpc_url)
        for entry in tx_hashes.values():
            receipt = chain.get_receipt(entry["tx_hash"])
            entry["gas_used"] = None if receipt is None else receipt.gas_used
        self.anchors = sorted(tx_hashes.values(), key=lambda e: int(e["tree_size"]))
        return f"{len(self.bundles)} receipts verified in {len(self.anchors)} anchor(s)"

    def step_log(self) -> str:
        """Walk the log: anchored checkpoints, consistency proofs, spot checks"""
        auditor = self.client("auditor")
        try:
            report = auditor.audit_log(
                self.exchange.rpc_url,
                self.exchange.registry_address,
                spot_indices=[r.index for r in self.records],
            )
        except AuditError as exc:
            raise DemoFailure("log", f"step {exc.step}: {exc.message}") from exc
        self.tree_size = auditor.checkpoint().tree_size
        self.log_checks = len(report.checks)
        return f"{self.log_checks} checks passed; tree size {self.tree_size}"


def run_demo(
    exchange: DemoExchange,
    work_dir: Path,
    *,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    reporter: Reporter | None = None,
    after: Mapping[str, Callable[[Demo], None]] | None = None,
    anchor_timeout: float = 300.0,
) -> DemoResult:
    """The story against ``exchange`` (see the module docstring)."""
    with Demo(
        exchange,
        work_dir,
        rows=rows,
        seed=seed,
        reporter=reporter,
        anchor_timeout=anchor_timeout,
    ) as demo:
        return demo.run(after=after)
