"""The exchange's early validator on the real HTTP path: a hostile buyer's queries
are refused with the validator's reason code (422 ``query_refused``, ``reason``),
nothing is reserved or logged, and the order's allowance is untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import running_exchange
from test_computations_support import Bought, buy_queries

ATTACKS = [
    ("SELECT * FROM ridership", "returns_rows"),
    ("SELECT DISTINCT district FROM ridership", "returns_rows"),
    ("SELECT stop, COUNT(*) FROM ridership GROUP BY stop", "hidden_column"),
    ("SELECT COUNT(*) FROM ridership WHERE stop = 'YZ0412'", "hidden_column"),
    ("SELECT district, boardings FROM ridership", "returns_rows"),
    ("SELECT district, boardings, COUNT(*) FROM ridership GROUP BY district", "raw_value"),
    ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", "table_function"),
    ("SELECT COUNT(*) FROM 'ridership.csv'", "unknown_table"),
    ("COPY ridership TO '/tmp/out.csv'", "statement_not_allowed"),
    ("ATTACH '/tmp/x.db' AS x", "statement_not_allowed"),
    ("PRAGMA database_list", "statement_not_allowed"),
    ("INSTALL httpfs", "statement_not_allowed"),
    ("SET enable_external_access = true", "statement_not_allowed"),
    ("SELECT COUNT(*) FROM ridership; COPY ridership TO 'x.csv'", "multiple_statements"),
    ("WITH t AS (SELECT * FROM ridership) SELECT COUNT(*) FROM t", "cte"),
    (
        "SELECT COUNT(*) FROM ridership UNION SELECT COUNT(*) FROM ridership",
        "union",
    ),
    ("SELECT COUNT(*) FROM (SELECT * FROM ridership)", "subquery"),
    ("SELECT COUNT(*) FROM ridership a, ridership b", "join"),
    ("SELECT SUM(boardings) OVER (PARTITION BY district) FROM ridership", "window_function"),
    ("SELECT string_agg(district, ',') FROM ridership", "string_aggregate"),
    ("SELECT MAX(boardings) FROM ridership", "minmax_forbidden"),
    ("SELECT median(boardings) FROM ridership", "raw_value"),
    ("SELECT SUM(boardings * 1000) FROM ridership", "aggregate_argument"),
    (
        "SELECT district, SUM(boardings) FROM ridership GROUP BY district "
        "HAVING SUM(boardings) > 1",
        "having_with_privacy",
    ),
]


@pytest.fixture
def bought(live_server: Any, tmp_path: Path) -> Iterator[Bought]:
    with running_exchange(live_server, tmp_path) as exchange:
        yield buy_queries(exchange, queries=2)


def test_hostile_queries_are_refused_early_with_their_reason(bought: Bought) -> None:
    before = bought.state()
    refused = {}
    for sql, _ in ATTACKS:
        response = bought.ask(sql)
        assert response.status_code == 422, (sql, response.text)
        body = response.json()
        assert body["code"] == "query_refused", (sql, body)
        assert body["message"].startswith(body["reason"] + ": ")
        refused[sql] = body["reason"]
    assert refused == dict(ATTACKS)
    assert bought.state() == before
    order = bought.order()
    assert (order["queries_left"], order["epsilon_left"]) == (2, "1.5")
