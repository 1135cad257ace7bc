"""The agent's computation engine: answers validated queries on the provider's data
inside a locked-down DuckDB, with k suppression and optional differential privacy.

:class:`ComputeEngine` loads one dataset (CSV or Parquet) into an in-memory DuckDB
table created by this code, then locks the database down before any buyer query:
no external access (files, network, ATTACH, COPY), no extension loading or
installing, no Python replacement scans, no spilling to disk, a memory limit and a
thread count, and the configuration locked so a query cannot undo any of it. Each
query is checked by :func:`ledger.computation.validate.validate` and only the SQL
it generates runs, under a time limit (a timer interrupts the connection) and a
cap on the groups returned.

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

import math
import os
import threading
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


class ComputeEngine:
    """One dataset, one offer, one locked-down in-memory DuckDB. Thread-safe (queries
    run one at a time). Close it (or use ``with``) to free the memory."""

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
        query = validate(sql, self.offer, table=TABLE)
        privacy = self.offer.privacy
        if privacy is not None and (
            epsilon is None or not 0 < epsilon <= privacy.epsilon_per_query
        ):
            raise ValueError("a private offer answers with 0 < ε ≤ the offer's ε per query")
        if privacy is None and epsilon is not None:
            raise ValueError("ε is for offers with differential privacy")
        k = self.offer.min_group_size
        with self._lock:
            if privacy is None or epsilon is None:
                table = self._exact(query, k)
                spent = Decimal(0)
            else:
                table = self._private(query, query.private_plan(k, privacy), epsilon)
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

    def _execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run generated SQL under the time limit; at most ``max_groups`` rows."""
        watchdog = _Watchdog(self._con, self.limits.time_limit_s)
        try:
            cursor = self._con.execute(sql)
            names = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchmany(self.limits.max_groups + 1)
        except duckdb.InterruptException:
            raise QueryRefusedError("timeout", "the query ran out of time") from None
        except duckdb.OutOfMemoryException:
            raise QueryRefusedError("out_of_memory", "the query needs too much memory") from None
        except duckdb.Error:
            raise QueryRefusedError("execution_failed", "the query failed to run") from None
        finally:
            watchdog.stop()
        if len(rows) > self.limits.max_groups:
            raise QueryRefusedError(
                "too_many_groups", f"the answer has more than {self.limits.max_groups} groups"
            )
        return names, rows

    def _exact(self, query: ValidatedQuery, k: int) -> ResultTable:
        names, rows = self._execute(query.exact_sql(k))
        count_at = names.index(GROUP_ROWS)
        kept = []
        for row in rows:
            if row[count_at] < k:  # the SQL dropped these; a second guard costs nothing
                raise RuntimeError("a group below the minimum size reached the answer")
            kept.append(row[:count_at] + row[count_at + 1 :])
        return ResultTable.of([o.name for o in query.outputs], kept)

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
        released = _order(released, query.order_by)
        if query.limit is not None:
            released = released[: query.limit]
        return ResultTable.of([o.name for o in query.outputs], released)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ComputeEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Watchdog:
    """Interrupts a connection's query once its time is up, and again every few
    milliseconds until stopped: an interrupt that lands while DuckDB is still
    parsing, before the query is running, is lost, so one is not enough."""

    _REPEAT_S: Final = 0.01

    def __init__(self, con: duckdb.DuckDBPyConnection, limit_s: float) -> None:
        self._con = con
        self._limit_s = limit_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="query-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        if self._done.wait(self._limit_s):
            return
        while True:
            self._con.interrupt()
            if self._done.wait(self._REPEAT_S):
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


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
    space = (
        dp.vector_domain(dp.atom_domain(T=float, nan=False), size=len(values)),
        dp.l1_distance(T=float),
    )
    scale = sensitivity / epsilon
    for _ in range(8):
        measurement = dp.m.make_laplace(*space, scale=scale, k=_NOISE_GRANULARITY)
        loss = measurement.map(sensitivity)  # type: ignore[no-untyped-call]
        if loss <= epsilon:
            return list(measurement(values))
        scale = math.nextafter(scale * (loss / epsilon), math.inf)
    raise RuntimeError("could not calibrate the Laplace noise")  # pragma: no cover


def _order(rows: list[list[object]], keys: Sequence[OrderKey]) -> list[list[object]]:
    """ORDER BY on released values, as DuckDB orders: stable, NULLS LAST unless
    asked otherwise, per key."""
    for key in reversed(keys):
        present = [r for r in rows if r[key.output] is not None]
        missing = [r for r in rows if r[key.output] is None]
        present.sort(key=lambda r: r[key.output], reverse=key.descending)  # type: ignore[return-value,arg-type]
        rows = missing + present if key.nulls_first else present + missing
    return rows
