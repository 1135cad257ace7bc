"""Alembic migrations (``exchange.migrations``, ``shancheng db``) on SQLite and, when
TEST_POSTGRES_URL is set, PostgreSQL (a throw-away schema per test).

The drift test fails when a model changes without a migration: after upgrading a
fresh database to head, autogenerate must find nothing to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlmodel import SQLModel

from exchange import migrations
from exchange.app import create_app
from exchange.db import make_engine
from exchange.log.testing import postgres_schema
from exchange.settings import Settings

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
ROOT = Path(__file__).resolve().parents[2]

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set"),
        ],
    ),
]

SEARCH_TRIGGERS = {"listing_search_ai", "listing_search_ad", "listing_search_au"}


@contextmanager
def empty_database(backend: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a new PostgreSQL schema
    (named ``prefix`` + random hex, dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'exchange.db'}"
        return
    assert POSTGRES_URL is not None
    with postgres_schema(POSTGRES_URL, prefix) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a new PostgreSQL schema."""
    with empty_database(request.param, tmp_path, "mig_test_") as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _drift(engine: Engine) -> list[Any]:
    migrations.load_models()
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": migrations.include_object}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def _schema(engine: Engine) -> dict[str, Any]:
    """Everything DDL made: tables, columns, indexes, and the raw-SQL search objects."""
    inspector = inspect(engine)
    tables = sorted(inspector.get_table_names())
    snapshot: dict[str, Any] = {
        name: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
            sorted(
                (i["name"] or "", tuple(i["column_names"])) for i in inspector.get_indexes(name)
            ),
        )
        for name in tables
    }
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            snapshot["#master"] = sorted(
                connection.execute(text("SELECT type, name, sql FROM sqlite_master")).all()
            )
        else:
            snapshot["#indexes"] = sorted(
                connection.execute(
                    text(
                        "SELECT indexname, indexdef FROM pg_indexes "
                        "WHERE schemaname = current_schema()"
                    )
                ).all()
            )
    return snapshot


def _search_objects(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT name FROM sqlite_master WHERE name LIKE 'listing_search%'")
            )
        else:
            rows = connection.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND indexname = 'listing_search_doc_trgm'"
                )
            )
        return {row[0] for row in rows}


def _has_pg_trgm(engine: Engine) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            ).scalar_one_or_none()
        )


def test_upgrade_matches_the_models(engine: Engine) -> None:
    """Fails when a model changes without a migration: add a revision
    (``alembic revision --autogenerate``, see README) until this passes."""
    migrations.upgrade(engine)
    assert migrations.current(engine) == migrations.head()
    assert _drift(engine) == []
    expected = set(SQLModel.metadata.tables) | {migrations.VERSION_TABLE}
    assert expected <= set(inspect(engine).get_table_names())


def test_upgrade_creates_the_search_text_index(engine: Engine) -> None:
    migrations.upgrade(engine)
    found = _search_objects(engine)
    if engine.dialect.name == "sqlite":
        assert {"listing_search_fts", *SEARCH_TRIGGERS} <= found
    elif _has_pg_trgm(engine):
        assert found == {"listing_search_doc_trgm"}


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    migrations.upgrade(engine)
    before = _schema(engine)
    migrations.upgrade(engine)
    assert _schema(engine) == before
    assert migrations.current(engine) == migrations.head()


def test_app_starts_on_a_migrated_database_without_changing_it(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    migrations.upgrade(engine)
    before = _schema(engine)
    app = create_app(Settings(data_dir=tmp_path, database_url=db_url))
    app.state.engine.dispose()
    assert _schema(engine) == before


def test_app_on_a_fresh_database_leaves_it_at_head(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    assert migrations.current(engine) is None
    app = create_app(Settings(data_dir=tmp_path, database_url=db_url))
    app.state.engine.dispose()
    assert migrations.current(engine) == migrations.head()
    assert _drift(engine) == []
    before = _schema(engine)
    migrations.upgrade(engine)  # nothing left to do
    assert _schema(engine) == before


def _made_before_migrations(engine: Engine, *dropped: str) -> None:
    """What the app's start-up made before Alembic (revision 0001's schema, unmarked),
    without the tables ``dropped``."""
    migrations.upgrade(engine, migrations.BEFORE_MIGRATIONS)
    with engine.begin() as connection:
        for name in (migrations.VERSION_TABLE, *dropped):
            connection.execute(text(f'DROP TABLE "{name}"'))


def test_database_made_before_migrations_is_marked_and_upgraded(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _made_before_migrations(engine)
    assert migrations.current(engine) is None
    app = create_app(Settings(data_dir=tmp_path, database_url=db_url))
    app.state.engine.dispose()
    assert migrations.current(engine) == migrations.head()
    assert _drift(engine) == []
    if engine.dialect.name == "sqlite":  # 0003's raw SQL ran: triggers and facet tables
        assert {"listing_search_gram", "listing_search_facet"} <= _search_objects(engine)
    migrations.ensure_schema(engine)  # a second worker starting: nothing to do
    assert migrations.current(engine) == migrations.head()


def test_an_incomplete_database_from_before_migrations_is_refused(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _made_before_migrations(engine, "used_quote", "anchor")
    before = _schema(engine)
    with pytest.raises(migrations.SchemaError) as refused:
        create_app(Settings(data_dir=tmp_path, database_url=db_url))
    message = str(refused.value)
    assert "\n" not in message
    assert "without migrations" in message and "anchor, used_quote" in message
    assert _schema(engine) == before  # no table made, no version marked
    shown = _cli("db", "upgrade", "--database-url", db_url, cwd=tmp_path)
    assert shown.returncode != 0
    assert "anchor, used_quote" in shown.stderr
    assert _schema(engine) == before


def test_downgrade_to_base_removes_everything(engine: Engine) -> None:
    migrations.upgrade(engine)
    command.downgrade(migrations.make_config(engine), "base")
    assert set(inspect(engine).get_table_names()) == {migrations.VERSION_TABLE}
    assert migrations.current(engine) is None
    assert not _search_objects(engine)
    migrations.upgrade(engine)
    assert _drift(engine) == []


# -- shancheng db ------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update(NO_COLOR="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def test_cli_upgrade_is_idempotent(db_url: str, tmp_path: Path) -> None:
    head = migrations.head()
    first = _cli("db", "upgrade", "--database-url", db_url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"upgraded base -> {head}" in first.stdout
    second = _cli("db", "upgrade", "--database-url", db_url, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"already at {head}" in second.stdout
    shown = _cli("db", "current", "--database-url", db_url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{head} (head {head}; up to date)")
    engine = make_engine(db_url)
    try:
        assert _drift(engine) == []
    finally:
        engine.dispose()


def test_cli_upgrade_defaults_to_the_data_dir(tmp_path: Path) -> None:
    done = _cli("db", "upgrade", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert migrations.current(f"sqlite:///{tmp_path / 'data' / 'exchange.db'}") == (
        migrations.head()
    )


@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade", "--database-url", "nosuchdb://x"],
        ["db", "upgrade", "--database-url", "not a url"],
        ["db", "upgrade", "--database-url", "postgresql://nobody@127.0.0.1:1/none"],
        ["db", "current", "--database-url", "nosuchdb://x"],
        ["db", "upgrade", "--revision", "nosuchrevision", "--database-url", "sqlite:///x.db"],
    ],
)
def test_cli_errors_are_one_line(args: list[str], tmp_path: Path) -> None:
    failed = _cli(*args, cwd=tmp_path)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), failed.stderr


def test_0013_names_the_order_of_existing_log_entries(engine: Engine) -> None:
    """Entries logged before 0013 get ``order_id`` from their leaves: a string
    ``payload.order_id`` only (not a number, not a missing one, not one too long)."""
    migrations.upgrade(engine, "0012")
    payloads = [
        {"order_id": "0b9e0b5c-1111-4d2e-9a57-2c1e3f0a9b10", "reason": "x"},
        {"order_id": 7},
        {"listing_id": "L"},
        {"order_id": "o" * 201},
        "not an object",
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO promise_batch (first_index, size, batch_root, timestamp, "
                "log_key_id, signature) VALUES (0, 5, :b, 1, 'k', :b)"
            ),
            {"b": b"\x00" * 32},
        )
        for index, payload in enumerate(payloads):
            leaf = json.dumps({"record": {"type": "t", "payload": payload}}).encode()
            connection.execute(
                text(
                    'INSERT INTO log_entry ("index", leaf_hash, leaf, record_type, '
                    "actor_key_id, actor_public_key, batch_first_index) "
                    "VALUES (:i, :h, :leaf, 't', 'a', 'p', 0)"
                ),
                {"i": index, "h": bytes([index]) * 32, "leaf": leaf},
            )
    migrations.upgrade(engine)
    with engine.connect() as connection:
        named = connection.execute(
            text('SELECT "index", order_id FROM log_entry ORDER BY "index"')
        ).all()
    assert named == [
        (0, "0b9e0b5c-1111-4d2e-9a57-2c1e3f0a9b10"),
        (1, None),
        (2, None),
        (3, None),
        (4, None),
    ]
