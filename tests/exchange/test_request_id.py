"""Request ids and log lines over a real uvicorn: every answer (200, refusals, 404,
405, 413, the last-resort 500) carries ``X-Request-Id``; a well-formed incoming id is
kept, anything else replaced by a fresh one; every log line of a request is one JSON
object naming it (the request line: route template, status, duration; the 500's
traceback inside its line)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from exchange.app import create_app
from exchange.observability.log_format import json_formatter
from exchange.settings import Settings
from ledger.protocol.request_id import is_well_formed_request_id

FRESH = re.compile(r"[0-9a-f]{32}")


class Boom(RuntimeError):
    pass


@pytest.fixture
def served(tmp_path: Path, live_server: Any) -> Iterator[str]:
    app: FastAPI = create_app(Settings(data_dir=tmp_path, max_request_bytes=1024))

    def boom() -> None:
        raise Boom("kaput")

    app.add_api_route("/test-boom", boom)
    with live_server(app) as url:
        yield url


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the exchange's loggers write, through the serve command's formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("exchange")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize(
    "value", ["a", "abc-123", "0f" * 16, "req.2026-12-07T03:00:00Z_x", "A" * 128]
)
def test_a_well_formed_incoming_id_is_echoed(served: str, value: str) -> None:
    response = httpx.get(f"{served}/health", headers={"X-Request-Id": value})
    assert response.status_code == 200 and response.headers["x-request-id"] == value


@pytest.mark.parametrize(
    "value",
    [b"", b"a b", b"-abc", b".abc", b"A" * 129, b"a,b", b"a;b", b"a/b", b"\xe4bc", b"a\tb"],
)
def test_a_malformed_incoming_id_is_replaced(served: str, value: bytes) -> None:
    response = httpx.get(f"{served}/health", headers=[(b"X-Request-Id", value)])
    assert response.status_code == 200
    assert FRESH.fullmatch(response.headers["x-request-id"])


def test_without_an_id_each_request_gets_a_fresh_one(served: str) -> None:
    ids = {httpx.get(f"{served}/health").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5 and all(FRESH.fullmatch(i) for i in ids)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/no/such/path", None, 404, "not_found"),
        ("DELETE", "/health", None, 405, "method_not_allowed"),
        ("GET", "/listings/not-a-uuid", None, 422, "invalid_request"),
        ("GET", "/participants/me", None, 401, "unauthenticated"),
        ("POST", "/participants", b"{" * 2048, 413, "payload_too_large"),
        ("POST", "/participants", b'{"a": 1, "a": 2}', 400, "invalid_json"),
        ("GET", "/test-boom", None, 500, "internal"),
    ],
)
def test_refusals_and_faults_carry_the_id(
    served: str, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    headers = {"X-Request-Id": "caller-7", "Content-Type": "application/json"}
    response = httpx.request(method, f"{served}{path}", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.headers["x-request-id"] == "caller-7"
    anonymous = httpx.request(method, f"{served}{path}", content=body)
    assert FRESH.fullmatch(anonymous.headers["x-request-id"])


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert not text or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line one JSON object


def _request_lines(stream: io.StringIO, *request_ids: str) -> list[dict[str, Any]]:
    """Every line of these requests, once each has its request line (written as its
    answer ends, so perhaps just after the client has it)."""
    deadline = time.monotonic() + 30
    while True:
        lines = [line for line in _lines(stream) if line.get("request_id") in request_ids]
        done = {line["request_id"] for line in lines if line["event"] == "request"}
        if done == set(request_ids) or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def test_each_request_is_one_json_line_naming_it(served: str, log_lines: io.StringIO) -> None:
    httpx.get(
        f"{served}/listings/0b6f3f0e-8a7e-4f5e-9a39-0d3f6d3b6c11", headers={"X-Request-Id": "r-1"}
    )
    generated = httpx.get(f"{served}/no/such/path").headers["x-request-id"]
    lines = _request_lines(log_lines, "r-1", generated)
    requests = [line for line in lines if line["event"] == "request"]
    first = next(line for line in requests if line["request_id"] == "r-1")
    assert first["route"] == "/listings/{listing_id}" and first["status"] == 404
    assert first["method"] == "GET" and first["path"].startswith("/listings/0b6f3f0e")
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    assert isinstance(first["process"], int)
    second = next(line for line in requests if line["request_id"] == generated)
    assert second["route"] == "unmatched" and second["status"] == 404


def test_a_fault_logs_its_traceback_inside_its_own_line(
    served: str, log_lines: io.StringIO
) -> None:
    response = httpx.get(f"{served}/test-boom", headers={"X-Request-Id": "boom-1"})
    reference = re.search(r"reference ([0-9a-f]+)", response.json()["message"])
    assert reference
    mine = _request_lines(log_lines, "boom-1")
    fault = next(line for line in mine if line["level"] == "error")
    assert reference.group(1) in fault["event"]
    assert "Boom: kaput" in fault["exception"] and "Traceback" in fault["exception"]
    assert any(line["event"] == "request" and line["status"] == 500 for line in mine)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a", True),
        ("Z9", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("_a", False),
        ("a\n", False),
        ("a\nb", False),
        ("é", False),
    ],
)
def test_the_request_id_grammar(value: str, ok: bool) -> None:
    assert is_well_formed_request_id(value) is ok
