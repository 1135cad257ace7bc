"""The agent's locked-down computation engine on weather data shaped like the demo's.

100,000 rows from the demo's own generator (16 stations, hourly); the offer is
tests/ledger/testdata/computation_offer_weather.json (k = 10).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from agent.compute import ComputeEngine, ComputeLimits, DatasetMismatchError
from clients.demo import write_weather_csv
from ledger.computation.offer import BudgetExhaustedError, ComputationOffer
from ledger.computation.result import ResultTable
from ledger.computation.validate import QueryRefusedError, ValidatedQuery, validate

ROWS = 100_000
OFFER_JSON = json.loads(
    (Path(__file__).parent.parent / "ledger" / "testdata" / "computation_offer_weather.json")
    .read_text("utf-8")
)  # fmt: skip
OFFER = ComputationOffer.from_dict(OFFER_JSON)
# The first hour of 2025 in Chongqing: one row per station.
FIRST_HOUR = "TIMESTAMPTZ '2025-01-01 00:00:00+08:00'"


def private_offer(epsilon: str = "1", budget: str = "3") -> ComputationOffer:
    data = copy.deepcopy(OFFER_JSON)
    data["columns"] = [c for c in data["columns"] if c["name"] != "humidity_pct"]
    data["privacy"] = {
        "mechanism": "laplace",
        "epsilon_per_query": epsilon,
        "epsilon_budget": budget,
        "bounds": {"temperature_c": ["-10", "45"], "aqi": ["0", "500"]},
    }
    return ComputationOffer.from_dict(data)


@pytest.fixture(scope="module")
def weather_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weather") / "weather.csv"
    write_weather_csv(path, ROWS, seed=12)
    return path


@pytest.fixture(scope="module")
def engine(weather_csv: Path) -> Iterator[ComputeEngine]:
    with ComputeEngine(weather_csv, OFFER) as running:
        yield running


@pytest.fixture(scope="module")
def private_engine(weather_csv: Path) -> Iterator[ComputeEngine]:
    with ComputeEngine(weather_csv, private_offer()) as running:
        yield running


def plain(weather_csv: Path, sql: str) -> list[tuple[Any, ...]]:
    """The same SQL in an ordinary DuckDB over the same file (the reference)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE TABLE weather AS SELECT * FROM read_csv(?)", [str(weather_csv)])
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- happy path


def test_average_temperature_per_district_and_month_matches_plain_duckdb(
    engine: ComputeEngine, weather_csv: Path
) -> None:
    sql = (
        "SELECT district, month(observed_at) AS month, AVG(temperature_c) AS avg_t "
        "FROM weather GROUP BY district, month ORDER BY district, month"
    )
    answer = engine.run(sql)
    everything = plain(weather_csv, sql)
    # k = 10 applied by hand: the 8 UTC hours of 2024-12 are groups of 8 rows (16 in 北碚区)
    expected = plain(weather_csv, sql.replace(" ORDER BY", " HAVING COUNT(*) >= 10 ORDER BY"))
    assert len(expected) == len(everything) - 14
    assert answer.table.columns == ("district", "month", "avg_t")
    assert len(answer.table.rows) == len(expected) > 100
    for (district, month, avg_t), want in zip(answer.table.rows, expected, strict=True):
        assert (district, month) == want[:2]
        # the same engine, but parallel float sums may add in another order
        assert float(str(avg_t)) == pytest.approx(want[2], rel=1e-12, abs=1e-12)
    assert answer.rows_scanned == ROWS
    assert answer.epsilon_spent == 0


def test_the_answer_is_deterministic_bytes_with_their_sm3(engine: ComputeEngine) -> None:
    sql = "SELECT district, COUNT(*) AS n FROM weather GROUP BY district ORDER BY n DESC, district"
    first, second = engine.run(sql), engine.run(sql)
    assert first.encoded == second.encoded and first.result_sm3 == second.result_sm3
    assert ResultTable.from_bytes(first.encoded) == first.table
    assert first.table.rows[0] == ("北碚区", ROWS // 16 * 2)  # two stations in 北碚区
    assert first.query.sql.startswith('SELECT "dataset"."district" AS "district"')


def test_a_refused_query_returns_nothing_but_the_reason(engine: ComputeEngine) -> None:
    with pytest.raises(QueryRefusedError) as caught:
        engine.run("SELECT * FROM weather")
    assert caught.value.reason == "returns_rows"
    assert "北碚" not in caught.value.message


def test_the_same_question_is_checked_once_and_a_refused_one_every_time(
    engine: ComputeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    def counted(sql: str, offer: ComputationOffer, *, table: str | None = None) -> ValidatedQuery:
        checked.append(sql)
        return validate(sql, offer, table=table)

    monkeypatch.setattr("agent.compute.validate", counted)
    sql = "SELECT district, COUNT(*) AS stations_hours FROM weather GROUP BY district"
    answers = {engine.run(sql).encoded for _ in range(3)}
    assert checked == [sql] and len(answers) == 1
    hidden = "SELECT district, COUNT(station_id) FROM weather GROUP BY district"
    for _ in range(2):
        with pytest.raises(QueryRefusedError) as caught:
            engine.run(hidden)
        assert caught.value.reason == "hidden_column"
    assert checked == [sql, hidden, hidden]


# --------------------------------------------------------------------------- k


def test_a_narrow_where_isolating_one_row_is_suppressed(
    engine: ComputeEngine, weather_csv: Path
) -> None:
    narrow = (
        "SELECT AVG(temperature_c) FROM weather "  # noqa: S608
        f"WHERE district = '渝中区' AND observed_at = {FIRST_HOUR}"
    )
    assert plain(weather_csv, narrow.replace("AVG(temperature_c)", "COUNT(*)")) == [(1,)]
    answer = engine.run(narrow)
    assert answer.table.columns == ("avg(temperature_c)",)
    assert answer.table.rows == ()  # the one group has 1 row < k: not reported at all


def test_groups_are_counted_for_k_even_when_count_is_not_selected(
    engine: ComputeEngine, weather_csv: Path
) -> None:
    sql = (
        "SELECT district, SUM(temperature_c) FROM weather "  # noqa: S608
        f"WHERE observed_at = {FIRST_HOUR} GROUP BY district"
    )
    groups = plain(weather_csv, sql.replace("SUM(temperature_c)", "COUNT(*)"))
    assert len(groups) == 15 and max(n for _, n in groups) == 2  # all below k = 10
    assert engine.run(sql).table.rows == ()


def test_per_row_groups_cannot_difference_out_one_row(engine: ComputeEngine) -> None:
    """GROUP BY the hour inside one district: every group is one row, all suppressed."""
    sql = (
        "SELECT observed_at, SUM(temperature_c) FROM weather "
        "WHERE district = '渝中区' GROUP BY observed_at"
    )
    assert engine.run(sql).table.rows == ()


def test_k_does_not_stop_differencing_two_large_sets_without_noise(
    engine: ComputeEngine, weather_csv: Path
) -> None:
    """Two answers over sets of thousands of rows that differ by one row give that
    row's value exactly: k alone does not protect against this (docs/computations.md);
    that is what the noise and the ε budget are for (next test)."""
    everything = "SELECT SUM(temperature_c) FROM weather WHERE district = '渝中区'"
    all_but_one = f"{everything} AND observed_at <> {FIRST_HOUR}"
    secret = plain(
        weather_csv,
        f"SELECT temperature_c FROM weather WHERE district = '渝中区' "  # noqa: S608
        f"AND observed_at = {FIRST_HOUR}",
    )[0][0]
    difference = float(str(engine.run(everything).table.rows[0][0])) - float(
        str(engine.run(all_but_one).table.rows[0][0])
    )
    assert difference == pytest.approx(secret, abs=1e-6)


# --------------------------------------------------------------------------- differential privacy


def test_with_noise_the_difference_is_not_the_row_and_the_budget_ends_the_game(
    private_engine: ComputeEngine, weather_csv: Path
) -> None:
    privacy = private_engine.offer.privacy
    assert privacy is not None
    everything = "SELECT SUM(temperature_c) FROM weather WHERE district = '渝中区'"
    all_but_one = f"{everything} AND observed_at <> {FIRST_HOUR}"
    secret = plain(
        weather_csv,
        f"SELECT temperature_c FROM weather WHERE district = '渝中区' "  # noqa: S608
        f"AND observed_at = {FIRST_HOUR}",
    )[0][0]
    exact = plain(weather_csv, everything)[0][0]
    spent = Decimal(0)
    answers = []
    for sql in (everything, all_but_one, everything):
        epsilon = privacy.next_query_epsilon(spent)
        answer = private_engine.run(sql, epsilon=epsilon)
        spent += answer.epsilon_spent
        answers.append(float(str(answer.table.rows[0][0])))
    assert spent == Decimal(3)
    assert answers[0] != exact and answers[0] != answers[2]  # fresh noise on each answer
    assert answers[0] - answers[1] != pytest.approx(secret, abs=1e-6)
    with pytest.raises(BudgetExhaustedError):  # the buyer cannot average the noise away
        privacy.next_query_epsilon(spent)


def test_noisy_answers_keep_their_shape_k_and_order(
    private_engine: ComputeEngine, weather_csv: Path
) -> None:
    sql = (
        "SELECT district, COUNT(*) AS n, AVG(temperature_c) AS avg_t FROM weather "
        "GROUP BY district ORDER BY n DESC LIMIT 5"
    )
    answer = private_engine.run(sql, epsilon=Decimal("0.5"))
    assert answer.epsilon_spent == Decimal("0.5")
    assert answer.table.columns == ("district", "n", "avg_t")
    assert len(answer.table.rows) == 5
    counts = [row[1] for row in answer.table.rows]
    assert all(isinstance(n, int) and n >= 0 for n in counts)
    assert counts == sorted(counts, reverse=True)  # type: ignore[type-var]
    exact = dict(plain(weather_csv, "SELECT district, COUNT(*) FROM weather GROUP BY 1"))
    assert counts != [exact[row[0]] for row in answer.table.rows]
    for row in answer.table.rows:
        assert -10 <= float(str(row[2])) <= 45
    narrow = f"SELECT district, COUNT(*) FROM weather WHERE observed_at = {FIRST_HOUR} GROUP BY 1"  # noqa: S608
    assert private_engine.run(narrow, epsilon=Decimal(1)).table.rows == ()


def test_a_private_offer_needs_the_queries_epsilon(private_engine: ComputeEngine) -> None:
    with pytest.raises(ValueError, match="ε"):
        private_engine.run("SELECT COUNT(*) FROM weather")
    with pytest.raises(ValueError, match="ε"):
        private_engine.run("SELECT COUNT(*) FROM weather", epsilon=Decimal(2))


# --------------------------------------------------------------------------- limits and lockdown


def test_an_expensive_query_is_killed_by_the_time_limit(tmp_path: Path) -> None:
    data = tmp_path / "big.parquet"
    con = duckdb.connect(":memory:")
    con.execute(
        "COPY (SELECT 'd' || (range % 20000) AS district, range % 7 AS aqi, "
        "random() * 40 AS temperature_c, range AS humidity_pct, 0 AS station_id, "
        "'' AS station_name, now() AS observed_at, 0.0 AS precipitation_mm "
        "FROM range(1000000)) TO ? (FORMAT parquet)",
        [str(data)],
    )
    con.close()
    limits = ComputeLimits(time_limit_s=0.001, max_groups=100_000)
    watchdogs = _watchdog_threads()
    with ComputeEngine(data, OFFER, limits=limits) as slow:
        for _ in range(2):  # each query gets its own time limit
            with pytest.raises(QueryRefusedError) as caught:
                slow.run(
                    "SELECT district, COUNT(DISTINCT humidity_pct) FROM weather GROUP BY district"
                )
            assert caught.value.reason == "timeout"
    assert _watchdog_threads() == watchdogs  # closing the engine stops its watchdog


def test_a_query_that_finished_past_its_limit_is_out_of_time(
    weather_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy machine the watchdog's thread may be scheduled only after the query
    ended: the answer is refused all the same (here the watchdog never fires)."""
    from agent import compute

    monkeypatch.setattr(compute._Watchdog, "arm", lambda self: None)
    limits = ComputeLimits(time_limit_s=1e-9, max_groups=100_000)
    with (
        ComputeEngine(weather_csv, OFFER, limits=limits) as engine,
        pytest.raises(QueryRefusedError) as caught,
    ):
        engine.run("SELECT district, COUNT(*) AS n FROM weather GROUP BY district")
    assert caught.value.reason == "timeout"


def _watchdog_threads() -> int:
    return sum(t.name == "query-watchdog" for t in threading.enumerate())


def test_too_many_groups_are_refused(weather_csv: Path) -> None:
    capped = ComputeEngine(weather_csv, OFFER, limits=ComputeLimits(max_groups=5))
    with capped, pytest.raises(QueryRefusedError) as caught:
        capped.run("SELECT district, COUNT(*) FROM weather GROUP BY district")
    assert caught.value.reason == "too_many_groups"


def test_a_runtime_error_does_not_pass_on_duckdbs_message(engine: ComputeEngine) -> None:
    """DuckDB's conversion errors quote the value they could not convert."""
    with pytest.raises(QueryRefusedError) as caught:
        engine.run("SELECT COUNT(*) FROM weather WHERE district = 5")
    assert caught.value.reason == "execution_failed"
    assert "区" not in caught.value.message


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('{csv}')",
        "COPY (SELECT * FROM dataset) TO '{out}'",
        "ATTACH '{out}.db' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET memory_limit",
    ],
)
def test_the_database_itself_is_locked_down(
    engine: ComputeEngine, weather_csv: Path, tmp_path: Path, statement: str
) -> None:
    """Defence in depth: even SQL the validator would never emit cannot read files,
    write files, load extensions or loosen the configuration."""
    out = tmp_path / "leak.csv"
    sql = statement.format(csv=weather_csv, out=out)
    with pytest.raises(duckdb.Error):
        engine._con.execute(sql)  # the engine's connection, bypassing the validator
    assert not out.exists() and not Path(f"{out}.db").exists()


def test_the_dataset_must_fit_the_offer(weather_csv: Path) -> None:
    missing = copy.deepcopy(OFFER_JSON)
    missing["columns"].append({"name": "salary", "control": ["filter"], "aggregates": []})
    with pytest.raises(DatasetMismatchError, match="salary"):
        ComputeEngine(weather_csv, ComputationOffer.from_dict(missing))
    text_sum = copy.deepcopy(OFFER_JSON)
    text_sum["columns"][2] = {"name": "district", "control": ["aggregate"], "aggregates": ["sum"]}
    with pytest.raises(DatasetMismatchError, match="not numeric"):
        ComputeEngine(weather_csv, ComputationOffer.from_dict(text_sum))


def test_the_answer_does_not_depend_on_the_order_duckdb_returns_groups_in(
    engine: ComputeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parallel GROUP BY returns its groups in any order; the answer's bytes (and the
    SM3 the provider signs) must be the same whatever that order was."""
    sql = "SELECT district, COUNT(*) AS n FROM weather GROUP BY district"
    first = engine.run(sql).encoded
    execute = engine._execute

    def reversed_groups(query_sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        names, rows = execute(query_sql)
        return names, list(reversed(rows))

    monkeypatch.setattr(engine, "_execute", reversed_groups)
    assert engine.run(sql).encoded == first
