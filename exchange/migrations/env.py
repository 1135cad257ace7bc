"""Alembic's environment: run the migrations on the engine that
:func:`exchange.migrations.make_config` put in the config (or on the config's
``sqlalchemy.url`` when Alembic is run some other way)."""

from __future__ import annotations

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

from exchange.migrations import include_object, load_models

ADVISORY_LOCK_KEY = 0x5C_DB_0001
"""``pg_advisory_xact_lock`` key that serialises concurrent upgrades."""

config = context.config
load_models()
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    dialect = connection.dialect.name
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        render_as_batch=dialect == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if dialect == "sqlite":
            # the database's write lock for the whole upgrade (a second worker waits)
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        adopt_at = config.attributes.get("adopt_at")
        migration = context.get_context()
        if adopt_at is not None and not migration.get_current_heads():
            # tables made before Alembic (exchange.migrations.ensure_schema)
            migration.stamp(ScriptDirectory.from_config(config), adopt_at)
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from exchange.db import make_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no database: set sqlalchemy.url")
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                _run(connection)
        finally:
            engine.dispose()
        return
    with engine.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
