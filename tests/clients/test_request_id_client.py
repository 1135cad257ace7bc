"""The exchange's request id on the client's side: the SDK keeps the last answer's
``X-Request-Id`` and puts it on every :class:`APIError`; ``shancheng --debug`` prints
it, on success and on a refusal (against a real exchange, in a subprocess)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_cli_support import run_shancheng

from clients.sdk import ExchangeClient
from clients.sdk.errors import APIError
from exchange.app import create_app
from exchange.settings import Settings

FRESH = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def url(tmp_path: Path, live_server: Any) -> Iterator[str]:
    with live_server(create_app(Settings(data_dir=tmp_path))) as served:
        yield served


def test_the_client_keeps_the_last_request_id(url: str) -> None:
    with ExchangeClient(url) as client:
        assert client.last_request_id is None
        client.health()
        first = client.last_request_id
        client.health()
        assert first and FRESH.fullmatch(first) and client.last_request_id != first
        missing = str(uuid.uuid4())
        with pytest.raises(APIError) as caught:
            client.listing(missing)
    assert caught.value.status_code == 404
    assert caught.value.request_id == client.last_request_id
    assert caught.value.request_id is not None and FRESH.fullmatch(caught.value.request_id)
    assert f"(request id {caught.value.request_id})" in str(caught.value)


def test_an_answer_without_an_id_leaves_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    transport = httpx.MockTransport(handler)
    with (
        ExchangeClient("http://exchange.test", transport=transport) as client,
        pytest.raises(APIError) as caught,
    ):
        client.listing(str(uuid.uuid4()))
    assert caught.value.request_id is None and client.last_request_id is None
    assert "request id" not in str(caught.value)


def test_debug_prints_the_request_id(url: str) -> None:
    done = run_shancheng("--debug", "buyer", "search", "--exchange-url", url)
    assert done.returncode == 0, done.stderr
    printed = re.findall(r"^debug: request id (\S+)$", done.stderr, re.M)
    assert len(printed) == 1 and FRESH.fullmatch(printed[0])

    quiet = run_shancheng("buyer", "search", "--exchange-url", url)
    assert quiet.returncode == 0 and "request id" not in quiet.stderr


def test_debug_prints_the_request_id_of_a_refusal(url: str) -> None:
    missing = str(uuid.uuid4())
    done = run_shancheng("--debug", "buyer", "show", missing, "--exchange-url", url)
    assert done.returncode != 0
    printed = re.findall(r"^debug: request id (\S+)$", done.stderr, re.M)
    assert len(printed) == 1 and FRESH.fullmatch(printed[0])
    assert f"(request id {printed[0]})" in done.stderr  # in the traceback's APIError too
