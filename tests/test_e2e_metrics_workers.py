"""End to end: ``shancheng serve --workers 2`` on PostgreSQL. Its requests are counted
across both worker processes: whichever worker answers a scrape, ``/metrics`` gives
the sum of both (prometheus-client's multiprocess mode, in a fresh directory under
the data directory), and the database's figures are the same from both. Everything
the server writes on stderr is JSON lines, and each request's line names its id and
the worker that served it."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_e2e_workers import served

from exchange.log.testing import isolated_database

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
REPO = Path(__file__).resolve().parents[1]
MISSES = 25

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set"),
]


def _lines(stderr: Path) -> list[dict[str, Any]]:
    text = stderr.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]  # a line still being written is left out
    return [json.loads(line) for line in complete.splitlines()]


def _scrape(url: str, n: int) -> tuple[str, dict[str, float]]:
    response = httpx.get(f"{url}/metrics", headers={"X-Request-Id": f"scrape-{n}"}, timeout=30)
    assert response.status_code == 200, response.text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = sample.name + json.dumps(sample.labels, sort_keys=True)
            values[key] = sample.value
    return response.headers["x-request-id"], values


def _misses(values: dict[str, float]) -> float:
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    return values.get("shancheng_http_requests_total" + json.dumps(labels, sort_keys=True), 0.0)


def test_two_workers_count_into_one_exposition(tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    data_dir = tmp_path / "var"
    stale = data_dir / "prometheus" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier run")  # must not be summed in (nor break it)
    stderr = tmp_path / "serve.stderr"
    with (
        isolated_database(POSTGRES_URL, tmp_path) as db,
        served({"data_dir": str(data_dir), "database_url": db.url}, 2, stderr) as url,
    ):
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda n: httpx.get(f"{url}/no/such/{n}", timeout=30), range(MISSES))
            )
        assert [a.status_code for a in answers] == [404] * MISSES
        served_by: dict[int, list[dict[str, float]]] = {}
        deadline = time.monotonic() + 120
        n = 0
        while len(served_by) < 2:
            assert time.monotonic() < deadline, f"every scrape answered by {set(served_by)}"
            with ThreadPoolExecutor(4) as pool:
                scrapes = list(pool.map(lambda k: _scrape(url, k), range(n, n + 4)))
            n += 4
            lines = {line.get("request_id"): line for line in _lines(stderr)}
            for request_id, values in scrapes:
                line = lines.get(request_id)
                if line is not None:
                    served_by.setdefault(line["process"], []).append(values)
        files = sorted(p.name for p in (data_dir / "prometheus").iterdir())

    for scrapes_of_one_worker in served_by.values():
        for values in scrapes_of_one_worker:
            assert _misses(values) == MISSES  # both workers' counts, whoever answered
            assert values["shancheng_database_up{}"] == 1
            assert values["shancheng_log_entries{}"] == 0
    assert "counter_1.db" not in files and any(f.startswith("counter_") for f in files)
    every_line = _lines(stderr)
    assert every_line == [json.loads(line) for line in stderr.read_text().splitlines()]
    requests = [line for line in every_line if line["event"] == "request"]
    misses = [line for line in requests if line["path"].startswith("/no/such/")]
    assert len(misses) == MISSES
    assert {line["request_id"] for line in misses} == {a.headers["x-request-id"] for a in answers}
    assert all(line["route"] == "unmatched" and line["status"] == 404 for line in misses)
    assert any(line["logger"].startswith("uvicorn") for line in every_line)
