"""The computation query validator: what a hostile buyer tries, and the subset it allows.

The weather offer (testdata/computation_offer_weather.json): station_id and
station_name are ``never``, wind_speed_ms is not named (so never), district and
observed_at are filter + group_by, temperature_c is filter + avg/count/sum,
humidity_pct is avg/count_distinct/min/max, precipitation_mm is filter only, aqi is
group_by + avg; k = 10.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import sqlglot

from ledger.computation.offer import ComputationOffer
from ledger.computation.validate import (
    MAX_SQL_LENGTH,
    REASONS,
    OrderKey,
    QueryRefusedError,
    validate,
)

WEATHER_JSON = json.loads(
    (Path(__file__).parent / "testdata" / "computation_offer_weather.json").read_text("utf-8")
)
OFFER = ComputationOffer.from_dict(WEATHER_JSON)


def private_offer() -> ComputationOffer:
    data = copy.deepcopy(WEATHER_JSON)
    data["columns"] = [c for c in data["columns"] if c["name"] != "humidity_pct"]
    data["privacy"] = {
        "mechanism": "laplace",
        "epsilon_per_query": "1",
        "epsilon_budget": "5",
        "bounds": {"temperature_c": ["-10", "45"], "aqi": ["0", "500"]},
    }
    return ComputationOffer.from_dict(data)


# (description, SQL, reason). Every one is something a buyer might send to see rows.
ATTACKS: list[tuple[str, str, str]] = [
    # --- rows and raw values
    ("select star", "SELECT * FROM weather", "returns_rows"),
    ("FROM-first shorthand", "FROM weather", "returns_rows"),
    ("qualified star", "SELECT weather.* FROM weather", "returns_rows"),
    ("star with exclude", "SELECT * EXCLUDE (station_id) FROM weather", "returns_rows"),
    ("COLUMNS() expansion", "SELECT COLUMNS('.*') FROM weather", "returns_rows"),
    ("DISTINCT rows", "SELECT DISTINCT district FROM weather", "returns_rows"),
    ("plain column, no aggregation", "SELECT temperature_c FROM weather", "returns_rows"),
    (
        "raw value beside an aggregate",
        "SELECT district, temperature_c, COUNT(*) FROM weather GROUP BY district",
        "raw_value",
    ),
    (
        "any_value returns a row's value",
        "SELECT any_value(temperature_c) FROM weather",
        "raw_value",
    ),
    (
        "arg_max returns a row's value",
        "SELECT arg_max(district, temperature_c) FROM weather",
        "raw_value",
    ),
    ("median is a row's value", "SELECT median(temperature_c) FROM weather", "raw_value"),
    ("mode is a row's value", "SELECT mode(humidity_pct) FROM weather", "raw_value"),
    ("first()", "SELECT first(temperature_c) FROM weather", "raw_value"),
    (
        "HAVING on a bare non-key column",
        "SELECT district, COUNT(*) FROM weather GROUP BY district HAVING temperature_c > 1",
        "raw_value",
    ),
    # --- hidden columns, quoting and case
    (
        "hidden column as a group key",
        "SELECT station_id, COUNT(*) FROM weather GROUP BY 1",
        "hidden_column",
    ),
    (
        "unnamed column (never by omission)",
        "SELECT AVG(wind_speed_ms) FROM weather",
        "hidden_column",
    ),
    (
        "hidden column in WHERE",
        "SELECT COUNT(*) FROM weather WHERE station_id = 'CQ57516'",
        "hidden_column",
    ),
    (
        "quoted, upper-cased hidden column",
        "SELECT COUNT(*) FROM weather WHERE \"STATION_ID\" = 'x'",
        "hidden_column",
    ),
    (
        "mixed-case hidden column",
        "SELECT COUNT(*) FROM weather GROUP BY Station_Name",
        "hidden_column",
    ),
    ("casting a hidden column", "SELECT CAST(station_id AS VARCHAR) FROM weather", "hidden_column"),
    ("COUNT(DISTINCT hidden)", "SELECT COUNT(DISTINCT station_id) FROM weather", "hidden_column"),
    (
        "hidden column inside an aggregate expression",
        "SELECT SUM(length(station_name)) FROM weather",
        "hidden_column",
    ),
    ("rowid pseudo-column", "SELECT COUNT(*) FROM weather GROUP BY rowid", "hidden_column"),
    ("alias referenced in WHERE", "SELECT COUNT(*) AS n FROM weather WHERE n > 3", "hidden_column"),
    # --- roles of visible columns
    (
        "filter-only column as a key",
        "SELECT precipitation_mm, COUNT(*) FROM weather GROUP BY 1",
        "column_not_allowed_in_group_by",
    ),
    (
        "group-only column in WHERE",
        "SELECT COUNT(*) FROM weather WHERE aqi > 100",
        "column_not_allowed_in_filter",
    ),
    (
        "aggregate-only column in WHERE",
        "SELECT COUNT(*) FROM weather WHERE humidity_pct = 77",
        "column_not_allowed_in_filter",
    ),
    (
        "filter-only column aggregated",
        "SELECT SUM(precipitation_mm) FROM weather",
        "column_not_allowed_in_aggregate",
    ),
    (
        "key column aggregated",
        "SELECT COUNT(DISTINCT district) FROM weather",
        "column_not_allowed_in_aggregate",
    ),
    ("function the offer does not allow", "SELECT SUM(aqi) FROM weather", "function_not_allowed"),
    ("MIN where forbidden", "SELECT MIN(temperature_c) FROM weather", "minmax_forbidden"),
    (
        "MAX where forbidden, in HAVING",
        "SELECT COUNT(*) FROM weather HAVING MAX(temperature_c) > 30",
        "minmax_forbidden",
    ),
    # --- table functions and file readers
    ("read_csv", "SELECT COUNT(*) FROM read_csv('/etc/passwd')", "table_function"),
    (
        "read_parquet",
        "SELECT COUNT(*) FROM read_parquet('/home/provider/secret.parquet')",
        "table_function",
    ),
    ("glob", "SELECT COUNT(*) FROM glob('/home/*')", "table_function"),
    (
        "read_text in the select list",
        "SELECT read_text('/etc/passwd') FROM weather",
        "table_function",
    ),
    ("a file path as a table", "SELECT COUNT(*) FROM 'weather.csv'", "unknown_table"),
    (
        "generate_series to burn CPU",
        "SELECT COUNT(*) FROM generate_series(1, 1000000000000)",
        "table_function",
    ),
    ("duckdb_settings()", "SELECT COUNT(*) FROM duckdb_settings()", "table_function"),
    ("getenv", "SELECT COUNT(*) FROM weather WHERE district = getenv('HOME')", "table_function"),
    # --- statements
    ("COPY out", "COPY weather TO '/tmp/out.csv'", "statement_not_allowed"),
    ("ATTACH", "ATTACH '/tmp/other.db' AS other", "statement_not_allowed"),
    ("PRAGMA", "PRAGMA database_list", "statement_not_allowed"),
    ("INSTALL", "INSTALL httpfs", "statement_not_allowed"),
    ("LOAD", "LOAD httpfs", "statement_not_allowed"),
    ("SET", "SET enable_external_access = true", "statement_not_allowed"),
    ("CREATE", "CREATE TABLE copy AS SELECT * FROM weather", "statement_not_allowed"),
    ("CALL", "CALL pragma_version()", "statement_not_allowed"),
    ("DESCRIBE", "DESCRIBE weather", "statement_not_allowed"),
    ("SELECT INTO", "SELECT COUNT(*) INTO copy FROM weather", "statement_not_allowed"),
    # --- smuggling
    (
        "a second statement",
        "SELECT COUNT(*) FROM weather; SELECT * FROM weather",
        "multiple_statements",
    ),
    (
        "a second statement after a comment",
        "SELECT COUNT(*) FROM weather /* x */; COPY weather TO 'x'",
        "multiple_statements",
    ),
    (
        "a comment hiding nothing still yields one statement",
        "SELECT 1 --; SELECT 2",
        "unknown_table",
    ),
    (
        "too long",
        "SELECT COUNT(*) FROM weather WHERE " + " OR ".join(["district = 'x'"] * 400),  # noqa: S608
        "too_long",
    ),
    (
        "deep nesting",
        "SELECT COUNT(*) FROM weather WHERE " + "(" * 900 + "1" + ")" * 900,
        "too_complex",
    ),
    ("garbage", "SELECT COUNT(* FROM weather", "parse_error"),
    ("not a statement at all", "SELEKT everything", "statement_not_allowed"),
    ("empty", "  ;  ", "parse_error"),
    # --- subqueries, CTEs, set operations, joins
    (
        "IN subquery",
        "SELECT COUNT(*) FROM weather WHERE district IN (SELECT station_id FROM weather)",
        "subquery",
    ),
    (
        "scalar subquery",
        "SELECT (SELECT temperature_c FROM weather LIMIT 1) FROM weather",
        "subquery",
    ),
    ("FROM subquery", "SELECT COUNT(*) FROM (SELECT * FROM weather)", "subquery"),
    ("EXISTS", "SELECT COUNT(*) FROM weather WHERE EXISTS (SELECT 1)", "subquery"),
    (
        "ANY subquery",
        "SELECT COUNT(*) FROM weather WHERE temperature_c = ANY (SELECT 1)",
        "subquery",
    ),
    ("CTE exposing rows", "WITH r AS (SELECT * FROM weather) SELECT COUNT(*) FROM r", "cte"),
    (
        "recursive CTE",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r",
        "cte",
    ),
    ("UNION", "SELECT COUNT(*) FROM weather UNION SELECT 1", "union"),
    ("EXCEPT", "SELECT COUNT(*) FROM weather EXCEPT SELECT 1", "union"),
    ("cross join", "SELECT COUNT(*) FROM weather, weather AS w2", "join"),
    ("explicit cross join", "SELECT COUNT(*) FROM weather CROSS JOIN weather", "join"),
    ("another table", "SELECT COUNT(*) FROM information_schema.tables", "unknown_table"),
    ("schema-qualified table", "SELECT COUNT(*) FROM main.weather", "unknown_table"),
    ("no table", "SELECT 1", "unknown_table"),
    # --- windows and list/string aggregates
    ("window function", "SELECT SUM(temperature_c) OVER () FROM weather", "window_function"),
    (
        "row_number",
        "SELECT row_number() OVER (ORDER BY temperature_c) FROM weather",
        "window_function",
    ),
    ("QUALIFY", "SELECT COUNT(*) FROM weather QUALIFY 1 = 1", "window_function"),
    ("string_agg", "SELECT string_agg(district, ',') FROM weather", "string_aggregate"),
    (
        "list()",
        "SELECT district, list(temperature_c) FROM weather GROUP BY district",
        "string_aggregate",
    ),
    ("array_agg", "SELECT array_agg(temperature_c) FROM weather", "string_aggregate"),
    ("group_concat", "SELECT group_concat(station_name) FROM weather", "string_aggregate"),
    # --- shapes outside the subset
    (
        "arithmetic on an aggregate",
        "SELECT AVG(temperature_c) * 1 FROM weather",
        "expression_not_allowed",
    ),
    ("SUM(DISTINCT …)", "SELECT SUM(DISTINCT temperature_c) FROM weather", "aggregate_argument"),
    (
        "aggregate over an expression",
        "SELECT SUM(temperature_c * 1000) FROM weather",
        "aggregate_argument",
    ),
    (
        "FILTER clause",
        "SELECT COUNT(*) FILTER (WHERE temperature_c > 1) FROM weather",
        "expression_not_allowed",
    ),
    (
        "aggregate in WHERE",
        "SELECT COUNT(*) FROM weather WHERE COUNT(*) > 1",
        "misplaced_aggregate",
    ),
    ("aggregate as a group key", "SELECT COUNT(*) FROM weather GROUP BY 1", "misplaced_aggregate"),
    (
        "scalar function",
        "SELECT COUNT(*) FROM weather WHERE lower(district) = 'x'",
        "function_not_allowed",
    ),
    (
        "regexp",
        "SELECT COUNT(*) FROM weather WHERE regexp_matches(district, '.*')",
        "function_not_allowed",
    ),
    (
        "cast of a filter column",
        "SELECT COUNT(*) FROM weather WHERE CAST(temperature_c AS INT) = 3",
        "function_not_allowed",
    ),
    (
        "IN over a column",
        "SELECT COUNT(*) FROM weather WHERE 'x' IN (district)",
        "expression_not_allowed",
    ),
    (
        "LIKE with ESCAPE",
        "SELECT COUNT(*) FROM weather WHERE district LIKE 'a!%' ESCAPE '!'",
        "expression_not_allowed",
    ),
    ("a parameter", "SELECT COUNT(*) FROM weather WHERE district = ?", "expression_not_allowed"),
    ("OFFSET", "SELECT COUNT(*) FROM weather LIMIT 1 OFFSET 1", "clause_not_allowed"),
    ("sampling", "SELECT COUNT(*) FROM weather USING SAMPLE 10", "clause_not_allowed"),
    (
        "ROLLUP",
        "SELECT district, COUNT(*) FROM weather GROUP BY ROLLUP (district)",
        "clause_not_allowed",
    ),
    ("GROUP BY ALL", "SELECT district, COUNT(*) FROM weather GROUP BY ALL", "clause_not_allowed"),
    ("LIMIT percent", "SELECT COUNT(*) FROM weather LIMIT 10%", "clause_not_allowed"),
    (
        "ORDER BY something not returned",
        "SELECT district, COUNT(*) FROM weather GROUP BY district ORDER BY AVG(temperature_c)",
        "order_by_not_output",
    ),
]


def test_the_attack_list_is_long_and_each_reason_is_documented() -> None:
    assert len({sql for _, sql, _ in ATTACKS}) == len(ATTACKS) >= 25
    assert {reason for _, _, reason in ATTACKS} <= set(REASONS)


@pytest.mark.parametrize(("desc", "sql", "reason"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_queries_are_refused_with_their_reason(desc: str, sql: str, reason: str) -> None:
    with pytest.raises(QueryRefusedError) as caught:
        validate(sql, OFFER)
    assert caught.value.reason == reason, caught.value.message
    assert caught.value.message


def test_the_same_words_for_a_hidden_column_and_a_missing_one() -> None:
    """A refusal must not confirm that a hidden column exists."""
    messages = []
    for name in ("station_id", "no_such_column"):
        with pytest.raises(QueryRefusedError) as caught:
            validate(f"SELECT COUNT(*) FROM weather WHERE {name} = 1", OFFER)  # noqa: S608
        messages.append(caught.value.message.replace(name, "NAME"))
    assert messages[0] == messages[1]


def test_having_is_refused_when_the_offer_adds_noise() -> None:
    sql = "SELECT district, COUNT(*) FROM weather GROUP BY district HAVING COUNT(*) > 100"
    validate(sql, OFFER)
    with pytest.raises(QueryRefusedError) as caught:
        validate(sql, private_offer())
    assert caught.value.reason == "having_with_privacy"


def test_too_long_is_measured_on_the_text() -> None:
    base = "SELECT COUNT(*) FROM weather WHERE district = '"
    fits = base + "x" * (MAX_SQL_LENGTH - len(base) - 1) + "'"
    assert len(fits) == MAX_SQL_LENGTH
    validate(fits, OFFER)
    with pytest.raises(QueryRefusedError) as caught:
        validate(fits + " ", OFFER)
    assert caught.value.reason == "too_long"


# --------------------------------------------------------------------------- what passes


def test_group_by_district_and_month_is_normalised_and_bound() -> None:
    query = validate(
        """select District, month(observed_at) as "month", avg(Temperature_C) avg_t
           from WEATHER w -- the buyer's comment
           where w.observed_at >= TIMESTAMP '2025-02-01' and district in ('北碚区', '渝中区')
           group by district, "month" order by avg_t desc, 1 limit 5""",
        OFFER,
        table="dataset",
    )
    assert query.sql == (
        'SELECT "dataset"."district" AS "district", MONTH("dataset"."observed_at") AS "month", '
        'AVG("dataset"."temperature_c") AS "avg_t" FROM "dataset" '
        'WHERE "dataset"."observed_at" >= CAST(\'2025-02-01\' AS TIMESTAMP) '
        "AND \"dataset\".\"district\" IN ('北碚区', '渝中区') "
        'GROUP BY "dataset"."district", MONTH("dataset"."observed_at") '
        "ORDER BY 3 DESC, 1 ASC LIMIT 5"
    )
    assert [(o.name, o.kind, o.function, o.column) for o in query.outputs] == [
        ("district", "group_key", None, None),
        ("month", "group_key", None, None),
        ("avg_t", "aggregate", "avg", "temperature_c"),
    ]
    assert query.order_by == (OrderKey(2, descending=True), OrderKey(0))
    assert query.limit == 5
    assert "comment" not in query.sql


def test_the_executed_sql_counts_rows_per_group_and_drops_small_groups() -> None:
    query = validate("SELECT district, AVG(temperature_c) FROM weather GROUP BY district", OFFER)
    sql = query.exact_sql(10)
    assert sql == (
        'SELECT "weather"."district" AS "c0", AVG("weather"."temperature_c") AS "c1", '
        'COUNT(*) AS "__group_rows" FROM "weather" GROUP BY "weather"."district" '
        "HAVING COUNT(*) >= 10"
    )
    with_having = validate(
        "SELECT district, COUNT(*) AS n FROM weather GROUP BY district "
        "HAVING n > 50 OR district = 'x'",
        OFFER,
    ).exact_sql(7)
    assert with_having.endswith(
        'HAVING (COUNT(*) > 50 OR "weather"."district" = \'x\') AND COUNT(*) >= 7'
    )


def test_a_comment_cannot_reach_the_executed_sql() -> None:
    query = validate("SELECT COUNT(*) /* ; DROP TABLE x; */ FROM weather -- ; DROP", OFFER)
    assert "DROP" not in query.exact_sql(1) and "/*" not in query.exact_sql(1)


def test_the_executed_sql_parses_back_to_one_select() -> None:
    query = validate(
        "SELECT date_trunc('month', observed_at) AS m, COUNT(DISTINCT humidity_pct), "
        "MIN(humidity_pct), MAX(humidity_pct) FROM weather "
        "WHERE district LIKE '北%' AND temperature_c BETWEEN -5 AND 40.5 "
        "AND precipitation_mm IS NOT NULL AND NOT (district = 'x' OR district <> 'y') "
        "GROUP BY m ORDER BY m NULLS FIRST",
        OFFER,
    )
    parsed = sqlglot.parse(query.exact_sql(10), read="duckdb")
    assert len(parsed) == 1 and isinstance(parsed[0], sqlglot.exp.Select)
    assert [o.function for o in query.outputs] == [None, "count_distinct", "min", "max"]
    assert query.order_by == (OrderKey(0, nulls_first=True),)


def test_group_keys_may_be_written_as_position_alias_or_expression() -> None:
    forms = [
        "SELECT month(observed_at) AS m, COUNT(*) FROM weather GROUP BY 1",
        "SELECT month(observed_at) AS m, COUNT(*) FROM weather GROUP BY m",
        "SELECT month(observed_at) AS m, COUNT(*) FROM weather GROUP BY MONTH(observed_at)",
    ]
    assert len({validate(sql, OFFER).exact_sql(10) for sql in forms}) == 1


def test_group_keys_alone_are_allowed_and_still_counted_for_k() -> None:
    query = validate("SELECT aqi FROM weather GROUP BY aqi", OFFER)
    assert query.exact_sql(10).endswith('GROUP BY "weather"."aqi" HAVING COUNT(*) >= 10')


def test_the_private_plan_measures_clamped_sums_and_counts() -> None:
    offer = private_offer()
    assert offer.privacy is not None
    query = validate(
        "SELECT district, COUNT(*), AVG(temperature_c), SUM(temperature_c) FROM weather "
        "GROUP BY district ORDER BY 3 DESC LIMIT 3",
        offer,
        table="dataset",
    )
    plan = query.private_plan(10, offer.privacy)
    assert [(m.alias, m.kind, str(m.sensitivity)) for m in plan.measures] == [
        ("m0", "count", "1"),
        ("m1", "sum", "45"),
        ("m2", "count", "1"),
    ]
    assert [(r.kind, r.source, r.count_source) for r in plan.releases] == [
        ("key", "k0", None),
        ("count", "m0", None),
        ("avg", "m1", "m2"),
        ("sum", "m1", None),
    ]
    assert "ORDER BY" not in plan.sql and "LIMIT" not in plan.sql  # they act on noisy values
    assert "HAVING COUNT(*) >= 10" in plan.sql
    clamp = (
        'SUM(CASE WHEN CAST("dataset"."temperature_c" AS DOUBLE) < -10 THEN -10 '
        'WHEN CAST("dataset"."temperature_c" AS DOUBLE) > 45 THEN 45 '
        'ELSE CAST("dataset"."temperature_c" AS DOUBLE) END) AS "m1"'
    )
    assert clamp in plan.sql
