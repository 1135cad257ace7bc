"""The agent's computation engine: answers validated queries on the provider's data
inside a locked-down DuckDB, with k suppression and optional differential privacy.

:class:`ComputeEngine` loads one dataset (CSV or Parquet) into an in-memory DuckDB
table created by this code, then locks the database down before any buyer query:
no external access (files, network, ATTACH, COPY), no extension loading or
installing, no Python replacement scans, no spilling to disk, a memory limit and a
thread count, and the configuration locked so a query cannot undo any of it. Each
query is checked by :func:`ledger.computation.validate.validate` and only the SQL
it generates runs, under a time limit (a watchdog thread interrupts the
connection) and a cap on the groups returned. A query's validation and generated
SQL are kept per SQL text (the same question is checked and planned once), and the
calibrated noise measurement per shape: what is repeated per query is the query.

k (the offer's ``min_group_size``) is applied in the same query: the row count of
every group is computed (``COUNT(*)``, whether the buyer asked for it or not) and
groups with fewer rows are dropped. Suppressed groups are not reported, not even
their number.

With differential privacy the query computes exact per-group measures (counts,
and sums of values clamped into the offer's bounds), then OpenDP's Laplace
mechanism adds noise: sensitivity 1 for counts, ``max(|lower|, |upper|)`` for
clamped sums; the query's ε is split evenly over the distinct measures (one row
lies in one group, so groups compose in parallel). AVG is noisy sum / noisy count,
clamped into the bounds. ORDER BY and LIMIT then act on the noisy values.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import duckdb
import opendp.prelude as dp

from ledger.computation.offer import ComputationOffer
from ledger.computation.result import ResultTable
from ledger.computation.validate import (
    GROUP_ROWS,
    OrderKey,
    PrivatePlan,
    QueryRefusedError,
    ValidatedQuery,
    validate,
)
from ledger.sm3 import sm3

__all__ = [
    "TABLE",
    "ComputationResult",
    "ComputeEngine",
    "ComputeLimits",
    "DatasetMismatchError",
]

TABLE: Final = "dataset"
"""The agent's name of the loaded data; buyers write the offer's table name."""

_LOAD: Final = {
    "csv": 'CREATE TABLE "dataset" AS SELECT * FROM read_csv(?)',
    "parquet": 'CREATE TABLE "dataset" AS SELECT * FROM read_parquet(?)',
}
_NUMERIC_TYPES: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
     "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"}
)  # fmt: skip

_NOISE_GRANULARITY: Final = -40
"""Noise is a multiple of 2**-40 (see :func:`_laplace`)."""

_PREPARED_QUERIES: Final = 256
"""Validated queries kept per engine, by SQL text (least recently used dropped)."""

dp.enable_features("contrib")


class DatasetMismatchError(Exception):
    """The dataset does not fit the offer (a named column is missing, or a column
    offered for SUM/AVG is not numeric)."""


@dataclass(frozen=True, slots=True)
class ComputeLimits:
    """Resource limits of the engine's DuckDB."""

    memory_limit: str = "1GB"
    threads: int = max(1, min(4, os.cpu_count() or 1))
    time_limit_s: float = 10.0
    max_groups: int = 10_000
    timezone: str = "UTC"
    """Time zone for date parts of TIMESTAMP WITH TIME ZONE columns."""


@dataclass(frozen=True, slots=True)
class ComputationResult:
    """An answer: the table the buyer gets, its canonical bytes and SM3, and what the
    provider's ``computation.completed`` record states."""

    table: ResultTable
    encoded: bytes
    result_sm3: str
    rows_scanned: int
    epsilon_spent: Decimal
    query: ValidatedQuery


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A validated query and the SQL the engine runs for it: the exact query, or the
    private plan's measures before noise."""

    query: ValidatedQuery
    sql: str
    plan: PrivatePlan | None


class ComputeEngine:
    """One dataset, one offer, one locked-down in-memory DuckDB. Thread-safe (queries
    run one at a time). Close it (or use ``with``) to free the memory and stop its
    watchdog thread."""

    def __init__(
        self,
        path: str | Path,
        offer: ComputationOffer,
        *,
        data_format: Literal["csv", "parquet"] | None = None,
        limits: ComputeLimits | None = None,
    ) -> None:
        self.offer = offer
        self.limits = limits or ComputeLimits()
        self._lock = threading.Lock()
        self._con = duckdb.connect(":memory:")
        try:
            self._configure()
            self._load(Path(path), data_format)
            self._check_offer()
            self._lock_down()
            self.rows = int(self._scalar('SELECT COUNT(*) FROM "dataset"'))
        except BaseException:
            self._con.close()
            raise
        self._prepared = functools.lru_cache(maxsize=_PREPARED_QUERIES)(self._prepare)
        self._watchdog = _Watchdog(self._con, self.limits.time_limit_s)

    # ------------------------------------------------------------------ setup

    def _configure(self) -> None:
        limits = self.limits
        con = self._con
        con.execute("SET memory_limit = ?", [limits.memory_limit])
        con.execute("SET threads = ?", [limits.threads])
        con.execute("SET TimeZone = ?", [limits.timezone])
        con.execute("SET temp_directory = ''")  # nothing spills to disk: memory is the bound
        con.execute("SET enable_progress_bar = false")
        con.execute("SET python_enable_replacements = false")

    def _load(self, path: Path, data_format: str | None) -> None:
        kind = data_format or ("parquet" if path.suffix.lower() == ".parquet" else "csv")
        if not path.is_file():
            raise FileNotFoundError(path)
        # The table is created by the provider's code, before buyers' SQL can run.
        self._con.execute(_LOAD[kind], [str(path)])

    def _check_offer(self) -> None:
        described = self._con.execute('DESCRIBE "dataset"').fetchall()
        types = {str(row[0]).lower(): str(row[1]).upper() for row in described}
        for column in self.offer.columns:
            kind = types.get(column.name.lower())
            if kind is None:
                raise DatasetMismatchError(f"the dataset has no column {column.name!r}")
            if {"sum", "avg"} & set(column.aggregates) and not (
                kind in _NUMERIC_TYPES or kind.startswith("DECIMAL")
            ):
                raise DatasetMismatchError(f"{column.name!r} is {kind}, not numeric")

    def _lock_down(self) -> None:
        for statement in (
            "SET enable_external_access = false",
            "SET autoload_known_extensions = false",
            "SET autoinstall_known_extensions = false",
            "SET allow_community_extensions = false",
            "SET allow_unsigned_extensions = false",
            "SET lock_configuration = true",
        ):
            self._con.execute(statement)

    def _scalar(self, sql: str) -> Any:
        row = self._con.execute(sql).fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------ queries

    def run(self, sql: str, *, epsilon: Decimal | None = None) -> ComputationResult:
        """Validate and answer ``sql``. With a private offer, ``epsilon`` is what this
        query spends (from :meth:`ledger.computation.offer.Privacy.next_query_epsilon`).

        Raises :class:`QueryRefusedError`: the validator's reasons, or ``timeout``,
        ``out_of_memory``, ``too_many_groups``, ``execution_failed`` (DuckDB's own
        message is not passed on: it can quote data)."""
        prepared = self._prepared(sql)
        query = prepared.query
        privacy = self.offer.privacy
        if privacy is not None and (
            epsilon is None or not 0 < epsilon <= privacy.epsilon_per_query
        ):
            raise ValueError("a private offer answers with 0 < ε ≤ the offer's ε per query")
        if privacy is None and epsilon is not None:
            raise ValueError("ε is for offers with differential privacy")
        with self._lock:
            if prepared.plan is None or epsilon is None:
                table = self._exact(query, prepared.sql)
                spent = Decimal(0)
            else:
                table = self._private(query, prepared.plan, epsilon)
                spent = epsilon
        encoded = table.to_bytes()
        return ComputationResult(
            table=table,
            encoded=encoded,
            result_sm3=sm3(encoded).hex(),
            rows_scanned=self.rows,
            epsilon_spent=spent,
            query=query,
        )

    def _prepare(self, sql: str) -> _Prepared:
        """Validate ``sql`` and generate what runs for it (kept by :attr:`_prepared`;
        a refusal is raised, never kept)."""
        query = validate(sql, self.offer, table=TABLE)
        k = self.offer.min_group_size
        privacy = self.offer.privacy
        if privacy is None:
            return _Prepared(query, query.exact_sql(k), None)
        plan = query.private_plan(k, privacy)
        return _Prepared(query, plan.sql, plan)

    def _execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run generated SQL under the time limit; at most ``max_groups`` rows."""
        started = time.monotonic()
        self._watchdog.arm()
        try:
            cursor = self._con.execute(sql)
            names = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchmany(self.limits.max_groups + 1)
            # the watchdog's thread may not have been scheduled in time on a busy
            # machine: a query that finished past its limit is out of time all the same
            if time.monotonic() - started > self.limits.time_limit_s:
                raise duckdb.InterruptException("finished past the time limit")
        except duckdb.InterruptException:
            raise QueryRefusedError("timeout", "the query ran out of time") from None
        except duckdb.OutOfMemoryException:
            raise QueryRefusedError("out_of_memory", "the query needs too much memory") from None
        except duckdb.Error:
            raise QueryRefusedError("execution_failed", "the query failed to run") from None
        finally:
            self._watchdog.disarm()
        if len(rows) > self.limits.max_groups:
            raise QueryRefusedError(
                "too_many_groups", f"the answer has more than {self.limits.max_groups} groups"
            )
        return names, rows

    def _exact(self, query: ValidatedQuery, sql: str) -> ResultTable:
        names, rows = self._execute(sql)
        count_at = names.index(GROUP_ROWS)
        k = self.offer.min_group_size
        kept = []
        for row in rows:
            if row[count_at] < k:  # the SQL dropped these; a second guard costs nothing
                raise RuntimeError("a group below the minimum size reached the answer")
            kept.append(row[:count_at] + row[count_at + 1 :])
        ordered = _order(_in_a_fixed_order(kept), query.order_by)
        return ResultTable.of([o.name for o in query.outputs], ordered)

    def _private(self, query: ValidatedQuery, plan: PrivatePlan, epsilon: Decimal) -> ResultTable:
        names, rows = self._execute(plan.sql)
        at = {name: i for i, name in enumerate(names)}
        if any(row[at[GROUP_ROWS]] < self.offer.min_group_size for row in rows):
            raise RuntimeError("a group below the minimum size reached the answer")
        noisy: dict[str, list[float]] = {}
        if plan.measures:
            share = float(epsilon) / len(plan.measures)
            for measure in plan.measures:
                exact = [_as_float(row[at[measure.alias]]) for row in rows]
                noisy[measure.alias] = _laplace(exact, float(measure.sensitivity), share)
        released: list[list[object]] = []
        for i, row in enumerate(rows):
            out: list[object] = []
            for release in plan.releases:
                if release.kind == "key":
                    out.append(row[at[release.source]])
                elif release.kind == "count":
                    out.append(max(0, round(noisy[release.source][i])))
                elif release.kind == "sum":
                    out.append(noisy[release.source][i])
                else:
                    assert release.count_source is not None and release.bounds is not None
                    total = noisy[release.source][i]
                    count = max(1.0, noisy[release.count_source][i])
                    lower, upper = (float(b) for b in release.bounds)
                    out.append(min(upper, max(lower, total / count)))
            released.append(out)
        released = _order(_in_a_fixed_order(released), query.order_by)
        if query.limit is not None:
            released = released[: query.limit]
        return ResultTable.of([o.name for o in query.outputs], released)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._watchdog.close()
        self._con.close()

    def __enter__(self) -> ComputeEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Watchdog:
    """Interrupts a connection's query once its time is up, and again every few
    milliseconds until the query ends: an interrupt that lands while DuckDB is still
    parsing, before the query is running, is lost, so one is not enough.

    One thread per engine, waiting between queries: starting and joining a thread per
    query costs milliseconds of scheduling on a busy machine. Interrupts are sent
    while holding the condition's lock, so none follows :meth:`disarm`."""

    _REPEAT_S: Final = 0.01

    def __init__(self, con: duckdb.DuckDBPyConnection, limit_s: float) -> None:
        self._con = con
        self._limit_s = limit_s
        self._changed = threading.Condition()
        self._deadline: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="query-watchdog", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        with self._changed:
            self._deadline = time.monotonic() + self._limit_s
            self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()

    def _watch(self) -> None:
        with self._changed:
            while not self._closed:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                else:
                    self._con.interrupt()
                    self._changed.wait(self._REPEAT_S)


def _as_float(value: Any) -> float:
    """An exact measure as a float (a SUM over only NULLs is NULL: nothing, 0)."""
    return 0.0 if value is None else float(value)


def _laplace(values: list[float], sensitivity: float, epsilon: float) -> list[float]:
    """``values`` plus Laplace noise from OpenDP, calibrated so that changing one row
    (L1 change ≤ ``sensitivity`` over the whole vector) costs at most ``epsilon``.

    Noise is drawn on the lattice 2**-40 (OpenDP's ``k``): several times faster than
    the exact float sampler, for a privacy loss larger by about 1e-10 relative, which
    the calibration below absorbs by widening the scale."""
    if not values:
        return []
    return list(_laplace_measurement(len(values), sensitivity, epsilon)(values))


@functools.lru_cache(maxsize=256)
def _laplace_measurement(size: int, sensitivity: float, epsilon: float) -> dp.Measurement:
    """The Laplace measurement on vectors of ``size`` whose own privacy map gives at
    most ``epsilon`` for an L1 change of ``sensitivity``. Kept: the same query shape
    (groups, measures, ε) is calibrated once."""
    space = (
        dp.vector_domain(dp.atom_domain(T=float, nan=False), size=size),
        dp.l1_distance(T=float),
    )
    scale = sensitivity / epsilon
    for _ in range(8):
        measurement = dp.m.make_laplace(*space, scale=scale, k=_NOISE_GRANULARITY)
        loss = measurement.map(sensitivity)  # type: ignore[no-untyped-call]
        if loss <= epsilon:
            return measurement
        scale = math.nextafter(scale * (loss / epsilon), math.inf)
    raise RuntimeError("could not calibrate the Laplace noise")  # pragma: no cover


def _in_a_fixed_order(rows: Sequence[Sequence[object]]) -> list[list[object]]:
    """The rows sorted on all their values (NULLs last): DuckDB's parallel GROUP BY
    returns groups in any order, and an answer's bytes (its SM3, the record the
    provider signs) must not depend on thread scheduling. ORDER BY is applied after,
    with a stable sort, so its ties come out in this order too."""

    def key(row: Sequence[object]) -> list[tuple[bool, str, object]]:
        return [(v is None, type(v).__name__, 0 if v is None else v) for v in row]

    return [list(row) for row in sorted(rows, key=key)]


def _order(rows: list[list[object]], keys: Sequence[OrderKey]) -> list[list[object]]:
    """ORDER BY on released values, as DuckDB orders: stable, NULLS LAST unless
    asked otherwise, per key."""
    for key in reversed(keys):
        present = [r for r in rows if r[key.output] is not None]
        missing = [r for r in rows if r[key.output] is None]
        present.sort(key=lambda r: r[key.output], reverse=key.descending)  # type: ignore[return-value,arg-type]
        rows = missing + present if key.nulls_first else present + missing
    return rows
