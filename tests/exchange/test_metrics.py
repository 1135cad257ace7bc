"""``/metrics`` over a real uvicorn (SQLite, and PostgreSQL when TEST_POSTGRES_URL is
set): the exposition parses with prometheus-client's own parser and its figures are
the story's (log size and sequencer lag equal the log, the appender's batches hold
the appended records, requests counted by route template and status); the database
figures (anchor states, the oldest unanchored entry, pending deliveries and queries)
against rows put in place; who may read ``/metrics``; the operator page's figures.

The in-memory instruments are shared by every app of the test process, so the
request and batch figures are compared before and after the story."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlmodel import Session, col
from test_raw_append_support import enrol

from clients.signing import SM2RequestSigner
from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.app import create_app
from exchange.computations.models import Computation
from exchange.log.models import LogEntry, PromiseBatchRow
from exchange.log.sequencer import integrate_pending
from exchange.log.testing import LogDatabase, isolated_database
from exchange.metrics.collector import DatabaseCollector
from exchange.metrics.figures import current_figures
from exchange.orders.models import Order
from exchange.payouts.models import Withdrawal
from exchange.settings import Settings
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as db:
        yield db


@pytest.fixture(scope="module")
def actor() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _app(db: LogDatabase, tmp_path: Path, **settings: Any) -> FastAPI:
    return create_app(
        Settings(
            data_dir=tmp_path / "data",
            database_url=db.url,
            sequencer_enabled=False,
            raw_append_rate_per_s=1_000_000,
            raw_append_burst=1_000_000,
            **settings,
        )
    )


@pytest.fixture
def app(log_db: LogDatabase, tmp_path: Path, actor: SM2PrivateKey) -> Iterator[FastAPI]:
    app = _app(log_db, tmp_path)
    enrol(app.state.engine, actor)
    yield app
    app.state.engine.dispose()  # an app never started (ASGI calls) keeps its pool


def _parse(text: str) -> Scrape:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(url: str) -> Scrape:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return _parse(response.text)


def _one(scrape: Scrape, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def _note(actor: SM2PrivateKey, n: int) -> dict[str, Any]:
    signed = sign_record(actor, "note.added", {"listing": f"l-{n}"})
    return {"record": signed.to_dict(), "public_key": actor.public_key().to_pem().decode()}


def _log_size(app: FastAPI) -> int:
    with Session(app.state.engine) as session:
        return int(session.execute(select(func.count(col(LogEntry.index)))).scalar_one())


def test_metrics_follow_a_story(app: FastAPI, live_server: Any, actor: SM2PrivateKey) -> None:
    with live_server(app) as url:
        before = _scrape(url)
        with httpx.Client(base_url=url, auth=SM2RequestSigner(actor)) as client:
            for n in range(3):
                assert client.post("/log/records", json=_note(actor, n)).status_code == 201
            batch = {"records": [_note(actor, n) for n in range(3, 5)]}
            assert client.post("/log/records:batch", json=batch).status_code == 201
        for index in (0, 1, 99):
            httpx.get(f"{url}/log/entries/{index}")
        httpx.get(f"{url}/no/such/page")
        during = _scrape(url)
        integrate_pending(app.state.session_factory, app.state.log_key)
        after = _scrape(url)

    assert _log_size(app) == 5
    assert _one(during, "shancheng_database_up") == 1
    assert _one(during, "shancheng_log_entries") == 5
    assert _one(during, "shancheng_checkpoint_tree_size") == 0
    assert _one(during, "shancheng_sequencer_lag_entries") == 5
    assert _one(after, "shancheng_checkpoint_tree_size") == 5
    assert _one(after, "shancheng_sequencer_lag_entries") == 0

    def delta(name: str, **labels: str) -> float:
        return _one(during, name, **labels) - _one(before, name, **labels)

    assert (
        delta("shancheng_http_requests_total", method="POST", route="/log/records", status="201")
        == 3
    )
    assert (
        delta(
            "shancheng_http_requests_total", method="POST", route="/log/records:batch", status="201"
        )
        == 1
    )
    entries = {"method": "GET", "route": "/log/entries/{index}"}
    # three paths, one template: counted under it whatever each answer was
    assert (
        sum(
            delta("shancheng_http_requests_total", **entries, status=str(status))
            for status in (200, 404, 409)
        )
        == 3
    )
    assert delta("shancheng_http_request_duration_seconds_count", **entries) == 3
    assert (
        delta("shancheng_http_requests_total", method="GET", route="unmatched", status="404") == 1
    )
    raw_paths = [labels for (_, labels) in during if ("route", "/log/entries/0") in labels]
    assert not raw_paths and not any(("route", "/no/such/page") in labels for (_, labels) in during)
    # four append transactions at most, storing exactly the five records
    assert 1 <= delta("shancheng_append_batch_records_count") <= 4
    assert delta("shancheng_append_batch_records_sum") == 5


def _timestamp_of(app: FastAPI, index: int) -> int:
    with Session(app.state.engine) as session:
        entry = session.get(LogEntry, index)
        assert entry is not None
        batch = session.get(PromiseBatchRow, entry.batch_first_index)
        assert batch is not None
        return batch.timestamp


def _anchor(app: FastAPI, tree_size: int, state: AnchorState) -> None:
    now = int(time.time() * 1000)
    with Session(app.state.engine) as session:
        row = session.get(AnchorRow, tree_size) or AnchorRow(
            tree_size=tree_size,
            root=b"\x00" * 32,
            chain_id=31337,
            registry_address="0x" + "11" * 20,
            created_at=now,
            updated_at=now,
        )
        row.state = state.value
        session.add(row)
        session.commit()


def test_anchor_figures_and_the_oldest_unanchored_entry(
    app: FastAPI, live_server: Any, actor: SM2PrivateKey
) -> None:
    with live_server(app) as url, httpx.Client(base_url=url, auth=SM2RequestSigner(actor)) as c:
        for n in range(4):
            assert c.post("/log/records", json=_note(actor, n)).status_code == 201
    integrate_pending(app.state.session_factory, app.state.log_key)

    with Session(app.state.engine) as session:
        figures = current_figures(session)
    assert figures.anchored_size == 0 and figures.oldest_unanchored_ms == _timestamp_of(app, 0)
    assert set(figures.anchor_states) == {s.value for s in AnchorState}
    assert not any(figures.anchor_states.values())

    _anchor(app, 2, AnchorState.FINAL)
    _anchor(app, 3, AnchorState.SENT)  # not on chain: does not cover entry 2
    with Session(app.state.engine) as session:
        figures = current_figures(session)
    assert figures.anchored_size == 2
    assert figures.anchor_states["final"] == 1 and figures.anchor_states["sent"] == 1
    assert figures.oldest_unanchored_ms == _timestamp_of(app, 2)

    collector = DatabaseCollector(
        app.state.session_factory, clock=lambda: (_timestamp_of(app, 2) + 7_500) / 1000
    )
    families = {family.name: family for family in collector.collect()}
    assert families["shancheng_oldest_unanchored_age_seconds"].samples[0].value == 7.5
    by_state = {s.labels["state"]: s.value for s in families["shancheng_anchors"].samples}
    assert by_state["final"] == 1 and by_state["sent"] == 1 and by_state["pending"] == 0
    assert families["shancheng_anchored_tree_size"].samples[0].value == 2

    _anchor(app, 4, AnchorState.ANCHORED)  # mined: covers every entry
    with Session(app.state.engine) as session:
        figures = current_figures(session)
    assert figures.anchored_size == 4 and figures.oldest_unanchored_ms is None
    assert figures.oldest_unanchored_age_s(10**15) == 0


def _order(state: str) -> Order:
    now = int(time.time() * 1000)
    return Order(
        id=str(uuid.uuid4()),
        buyer_key_id="b" * 64,
        listing_id=str(uuid.uuid4()),
        version=1,
        content_digest="00" * 32,
        quote_id=uuid.uuid4().hex,
        terms={},
        amount=100,
        escrow=100 if state == "placed" else 0,
        state=state,
        created_at=now,
        updated_at=now,
        placed_leaf_hash="00" * 32,
    )


def _computation(order_id: str, state: str) -> Computation:
    return Computation(
        id=str(uuid.uuid4()),
        order_id=order_id,
        listing_id=str(uuid.uuid4()),
        version=1,
        buyer_key_id="b" * 64,
        sql="SELECT count(*) FROM t",
        query_sm3="00" * 32,
        state=state,
        epsilon_reserved=0,
        requested_at=int(time.time() * 1000),
        requested_leaf_hash="00" * 32,
    )


def _withdrawal(state: str) -> Withdrawal:
    return Withdrawal(
        id=str(uuid.uuid4()),
        key_id="a" * 64,
        amount=100,
        destination="bank 1",
        state=state,
        requested_at=int(time.time() * 1000),
        requested_leaf_hash="00" * 32,
    )


def test_pending_deliveries_queries_and_payouts_count_only_what_waits(app: FastAPI) -> None:
    orders = [_order("placed"), _order("placed"), _order("delivered"), _order("settled")]
    with Session(app.state.engine) as session:
        session.add_all(orders)
        session.add_all(
            [
                _computation(orders[0].id, "pending"),
                _computation(orders[0].id, "completed"),
                _computation(orders[1].id, "refused"),
            ]
        )
        session.add_all(
            [_withdrawal(state) for state in ("pending", "paid", "rejected", "pending")]
        )
        session.commit()
        figures = current_figures(session)
    assert figures.pending_deliveries == 2
    assert figures.pending_computations == 1
    text = app.state.metrics.render().decode()
    assert re.search(r"^shancheng_pending_deliveries 2\.0$", text, re.M)
    assert re.search(r"^shancheng_pending_computations 1\.0$", text, re.M)
    assert figures.pending_payouts == 2
    assert re.search(r"^shancheng_pending_payouts 2\.0$", text, re.M)


# -- who may read /metrics ----------------------------------------------------------


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[FastAPI]:
    """Who may read is the same on every database: SQLite only."""
    app = create_app(Settings(data_dir=tmp_path))
    yield app
    app.state.engine.dispose()


def _from(app: FastAPI, client: str, **headers: str) -> httpx.Response:
    """A GET /metrics from the address ``client`` (ASGI: the app sees that peer)."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
            return await http.get("/metrics", headers=headers)

    return anyio.run(get)


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["message"]
    assert response.headers["x-request-id"]
    assert "shancheng_" not in response.text


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1"])
def test_without_a_token_loopback_clients_read_metrics(sqlite_app: FastAPI, peer: str) -> None:
    response = _from(sqlite_app, peer)
    assert response.status_code == 200 and "shancheng_log_entries" in response.text


@pytest.mark.parametrize("peer", ["10.0.0.7", "192.168.1.2", "2001:db8::1", "testclient", ""])
def test_without_a_token_other_clients_are_refused(sqlite_app: FastAPI, peer: str) -> None:
    _refused(_from(sqlite_app, peer), 403, "forbidden")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", "Basic czNjcmV0", "bearer s3cre", "s3cret"],
)
def test_with_a_token_only_its_bearer_reads_metrics(
    tmp_path: Path, authorization: str | None
) -> None:
    app = create_app(Settings(data_dir=tmp_path, metrics_token=SecretStr("s3cret")))
    headers = {} if authorization is None else {"Authorization": authorization}
    try:
        _refused(_from(app, "127.0.0.1", **headers), 401, "unauthenticated")
        for good in ("Bearer s3cret", "bearer s3cret"):
            response = _from(app, "10.0.0.7", Authorization=good)
            assert response.status_code == 200 and "shancheng_database_up 1.0" in response.text
    finally:
        app.state.engine.dispose()


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, metrics_enabled=False))
    try:
        _refused(_from(app, "127.0.0.1"), 404, "not_found")
    finally:
        app.state.engine.dispose()


def test_metrics_are_not_in_the_openapi_document(sqlite_app: FastAPI) -> None:
    assert "/metrics" not in sqlite_app.openapi()["paths"]


# -- the operator page ----------------------------------------------------------------


def test_the_operator_page_shows_the_figures_of_metrics(
    app: FastAPI, live_server: Any, actor: SM2PrivateKey
) -> None:
    with live_server(app) as url:
        with httpx.Client(base_url=url, auth=SM2RequestSigner(actor)) as client:
            for n in range(3):
                assert client.post("/log/records", json=_note(actor, n)).status_code == 201
        page = httpx.get(f"{url}/operator")
        scrape = _scrape(url)
    assert page.status_code == 200
    values: dict[str, str] = {}
    for name, value in re.findall(
        r'data-name="([a-z_]+)"[^>]*>\s*<div class="figure-value">([^<]*)</div>', page.text
    ):
        values.setdefault(name, value)  # the first figure of a family
    assert values["shancheng_log_entries"] == "3"
    assert values["shancheng_sequencer_lag_entries"] == "3"
    assert values["shancheng_pending_deliveries"] == "0"
    assert values["shancheng_anchors"] == "0"
    requests = sum(
        value for (name, _), value in scrape.items() if name == "shancheng_http_requests_total"
    )
    assert 3 <= int(values["shancheng_http_requests_total"].replace(",", "")) <= requests
    # counters are per process: a whole test run's batches are thousands (5,829)
    assert re.search(
        r"^\d{1,3}(,\d{3})* \(≈[\d,]+\.\d 条/批 per batch\)$",
        values["shancheng_append_batch_records"],
    )
