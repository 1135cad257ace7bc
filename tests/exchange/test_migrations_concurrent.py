"""Migrations under the conditions of a real deployment, on SQLite and (when
TEST_POSTGRES_URL is set) PostgreSQL:

* two worker processes migrating one fresh database at the same moment, through
  the app's start-up (``ensure_schema``) and through ``shancheng db upgrade``:
  both succeed (the second waits for the first), the schema is at head and
  ``alembic_version`` has one row;
* downgrading one step at a time with real rows in the tables (listings with
  their search index, orders with a renewal, account movements, log entries),
  then upgrading again: no error, and the data the schema keeps is intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from test_auth_support import Exchange
from test_migrations import BACKENDS, _drift, empty_database
from test_order_lifecycle import placed_body
from test_orders import deposit, order_body, place, publish, quote

from exchange import migrations
from exchange.app import create_app
from exchange.db import make_engine
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey

ROOT = Path(__file__).resolve().parents[2]
CLI_MODULE = "exchange.cli"  # `python -m exchange.cli db upgrade` is `shancheng db upgrade`

# A worker process: everything imported and connected, it waits for the start
# signal (a file) so that both processes begin migrating at the same moment.
_MIGRATE = """
import sys, time
from pathlib import Path

entry, url, ready, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
if entry == "ensure_schema":
    from exchange.db import make_engine
    from exchange.migrations import ensure_schema, load_models

    load_models()
    engine = make_engine(url)
    run = lambda: ensure_schema(engine)
else:
    import runpy

    sys.argv = ["shancheng", "db", "upgrade", "--database-url", url]
    run = lambda: runpy.run_module(entry, run_name="__main__")
ready.touch()
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.001)
run()
"""


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a new PostgreSQL schema."""
    with empty_database(request.param, tmp_path, "mig_race_") as url:
        yield url


@pytest.fixture
def fresh_engine(fresh_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        return [row[0] for row in rows]


@pytest.mark.parametrize("entry", ["ensure_schema", CLI_MODULE])
def test_two_processes_migrating_at_once(
    entry: str, fresh_url: str, fresh_engine: Engine, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(NO_COLOR="1", PYTHONPATH=str(ROOT))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, entry, fresh_url, str(flag), str(go)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready):
            assert all(p.poll() is None for p in processes), "a worker died before the start"
            assert time.monotonic() < deadline, "the workers did not get ready"
            time.sleep(0.01)
        go.touch()
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
    assert _version_rows(fresh_engine) == [migrations.head()]
    assert _drift(fresh_engine) == []


# -- downgrade with data ----------------------------------------------------------------

SUBSCRIPTION = {
    "model": "subscription",
    "price_per_period": 500,
    "period_days": 30,
    "max_periods": 12,
}


@pytest.fixture
def populated(fresh_url: str, live_server: Any, tmp_path: Path) -> Iterator[str]:
    """A database migrated to head by the app, with what a day of trading leaves:
    published listings (indexed for search), deposits, orders (one a renewal),
    the log's entries. Yields its URL once the app has stopped."""
    migrations.upgrade(fresh_url)
    operator = SM2PrivateKey.generate()
    app = create_app(
        Settings(
            data_dir=tmp_path / "data",
            database_url=fresh_url,
            sequencer_enabled=False,
            operator_public_keys=[operator.public_key().to_pem().decode()],
        )
    )
    with live_server(app) as url:
        ex = Exchange(app=app, url=url, operator=operator)
        try:
            owner = ex.provider("owner")
            buyer = ex.register("buyer")
            publish(ex, owner, title="重庆公交客流 2025", tags=["bus", "交通"])
            monthly = publish(
                ex, owner, title="Yangtze water levels", tags=["水"], pricing=SUBSCRIPTION
            )
            assert deposit(ex, buyer, 10_000).status_code == 201
            first = place(ex, buyer, order_body(buyer, quote(ex, buyer, monthly, periods=1)))
            assert first.status_code == 201, first.text
            renewal = placed_body(
                buyer, quote(ex, buyer, monthly, periods=2), renews=first.json()["order"]["id"]
            )
            assert place(ex, buyer, renewal).status_code == 201
        finally:
            for client in ex.clients:
                client.close()
    yield fresh_url


Snapshot = dict[str, list[dict[str, Any]]]


def _snapshot(engine: Engine, tables: list[str]) -> Snapshot:
    """Every row of ``tables`` (all columns, by name), sorted, to compare before and after."""
    found = {}
    with engine.connect() as connection:
        for table in tables:
            rows = connection.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
            found[table] = sorted((dict(row._mapping) for row in rows), key=repr)
    return found


def _columns(engine: Engine, tables: list[str]) -> dict[str, set[str]]:
    inspector = inspect(engine)
    return {table: {column["name"] for column in inspector.get_columns(table)} for table in tables}


def _only(snapshot: Snapshot, columns: dict[str, set[str]]) -> Snapshot:
    """``snapshot`` with only the given columns of each table."""
    return {
        table: sorted(
            ({k: v for k, v in row.items() if k in columns[table]} for row in rows), key=repr
        )
        for table, rows in snapshot.items()
    }


KEPT = ["participant", "listing", "listing_version", "account", "account_movement", "log_entry"]


def _search_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT listing_id, title_fold FROM listing_search"))
        return sorted(tuple(row) for row in rows)


def _search(url: str, live_server: Any, tmp_path: Path, term: str) -> list[str]:
    """The listing ids the app's search endpoint finds for ``term`` (a 1-2 character
    term goes through the gram index, a longer one through the trigram index)."""
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=url))
    with live_server(app) as base, httpx.Client(base_url=base) as client:
        response = client.get("/listings/search", params={"q": term})
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["items"]]


def test_downgrade_one_step_at_a_time_with_data_then_upgrade(
    populated: str, fresh_engine: Engine, live_server: Any, tmp_path: Path
) -> None:
    engine = fresh_engine
    found = {term: _search(populated, live_server, tmp_path, term) for term in ("交通", "yangtze")}
    assert all(len(ids) == 1 for ids in found.values()), found
    kept = _snapshot(engine, KEPT)
    with engine.connect() as connection:
        orders = connection.execute(
            text("SELECT id, renews_order_id, amount, escrow FROM orders")
        ).all()
    assert len(orders) == 2 and any(row[1] is not None for row in orders)
    indexed = _search_rows(engine)
    assert len(indexed) == 2

    config = migrations.make_config(engine)
    script = ScriptDirectory.from_config(config)
    steps = [rev.revision for rev in script.walk_revisions()]  # head first
    for revision in steps[:-1]:
        assert migrations.current(engine) == revision
        command.downgrade(config, "-1")
        assert _version_rows(engine) == [script.get_revision(revision).down_revision]
        # the columns the step dropped go; every row, and the rest of it, stays
        left = _columns(engine, KEPT)
        assert _snapshot(engine, KEPT) == _only(kept, left), f"rows lost downgrading {revision}"
        assert _search_rows(engine) == indexed
    assert migrations.current(engine) == steps[-1]
    survived = _columns(engine, KEPT)
    with engine.connect() as connection:
        assert len(connection.execute(text("SELECT id FROM orders")).all()) == 2

    migrations.upgrade(engine)
    assert _version_rows(engine) == [migrations.head()]
    assert _drift(engine) == []
    # the columns the downgrades dropped come back empty; the rest is as it was
    assert _only(_snapshot(engine, KEPT), survived) == _only(kept, survived)
    with engine.connect() as connection:
        again = connection.execute(
            text("SELECT id, renews_order_id, amount, escrow FROM orders")
        ).all()
    # the columns 0002 added come back empty; everything else is as it was
    assert sorted((r[0], r[2], r[3]) for r in again) == sorted((r[0], r[2], r[3]) for r in orders)
    assert _search_rows(engine) == indexed
    for term, ids in found.items():
        assert _search(populated, live_server, tmp_path, term) == ids, term
