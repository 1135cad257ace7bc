"""Alembic migrations of the exchange's database (``shancheng db upgrade``).

The Alembic configuration is built here, in code (no ``alembic.ini``): the
scripts live in this package, so an installed copy migrates as a checkout does.

* :func:`upgrade` / :func:`current`: what ``shancheng db`` runs.
* :func:`ensure_schema`: what ``create_app`` runs at start-up. A fresh database
  (or one Alembic already manages) is brought to head by the migrations. A
  database made by the app before Alembic (its tables present, no
  ``alembic_version``) holds the schema of revision ``0001`` (what start-up made
  then): it is marked at ``0001`` and migrated to head; one that lacks part of
  that schema is refused with :class:`SchemaError`. The migrations are the only
  thing that makes or changes tables.

Concurrent upgrades (several workers starting at once) are serialised: the
migration transaction takes ``pg_advisory_xact_lock`` on PostgreSQL and
``BEGIN IMMEDIATE`` (the write lock) on SQLite, so the loser finds head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

__all__ = [
    "BEFORE_MIGRATIONS",
    "MODEL_MODULES",
    "VERSION_TABLE",
    "SchemaError",
    "current",
    "ensure_schema",
    "head",
    "include_object",
    "load_models",
    "make_config",
    "revision",
    "upgrade",
]

VERSION_TABLE = "alembic_version"

MODEL_MODULES = (
    "exchange.log.models",
    "exchange.anchoring.models",
    "exchange.auth.models",
    "exchange.participants.models",
    "exchange.listings.models",
    "exchange.listings.search.index",
    "exchange.listings.quality",
    "exchange.accounts.models",
    "exchange.orders.models",
    "exchange.computations.models",
    "exchange.certificates.models",
    "exchange.payouts.models",
    "exchange.idempotency",
    "exchange.events.models",
    "exchange.webhooks.models",
    "exchange.refprice.models",
    "exchange.policies.models",
)
"""Every module that declares tables (``SQLModel, table=True``): importing them all
fills ``SQLModel.metadata`` with the whole schema."""

_SCRIPT_LOCATION = Path(__file__).resolve().parent


def load_models() -> None:
    """Import every models module, so ``SQLModel.metadata`` holds every table."""
    import importlib

    for name in MODEL_MODULES:
        importlib.import_module(name)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """For autogenerate: leave out what the migrations make with raw SQL, which the
    models cannot describe (SQLite's FTS5 tables and their shadow tables, the facet
    tables their triggers keep, PostgreSQL's trigram and gram indexes)."""
    if type_ == "table" and name is not None and name.startswith(_RAW_SEARCH_TABLES):
        return False
    return not (type_ == "index" and name in _RAW_SEARCH_INDEXES)


_RAW_SEARCH_TABLES = (
    "listing_search_fts",
    "listing_search_gram",
    "listing_search_facet",
    "listing_search_bitmap",
)
_RAW_SEARCH_INDEXES = ("listing_search_doc_trgm", "listing_search_gram_gin")


def make_config(engine: Engine) -> Config:
    """An Alembic ``Config`` for this package's scripts, migrating ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    config.attributes["engine"] = engine
    return config


def _engine(target: str | Engine) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    from exchange.db import make_engine

    return make_engine(target), True


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the database (a URL or an engine) up to ``revision``."""
    engine, owned = _engine(target)
    try:
        command.upgrade(make_config(engine), revision)
    finally:
        if owned:
            engine.dispose()


def current(target: str | Engine) -> str | None:
    """The database's revision, or ``None`` when Alembic has not marked it."""
    engine, owned = _engine(target)
    try:
        with engine.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
        return ",".join(heads) if heads else None
    finally:
        if owned:
            engine.dispose()


def head() -> str:
    """The newest revision of the scripts."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_SCRIPT_LOCATION))
    revision = script.get_current_head()
    assert revision is not None
    return revision


def revision(target: str | Engine, message: str, autogenerate: bool = True) -> None:
    """Write a new revision script (for developers; ``target`` must be at head):
    with ``autogenerate`` its operations are what the models need beyond it."""
    engine, owned = _engine(target)
    try:
        command.revision(make_config(engine), message=message, autogenerate=autogenerate)
    finally:
        if owned:
            engine.dispose()


class SchemaError(RuntimeError):
    """The database cannot be brought to head by the migrations."""


def ensure_schema(engine: Engine) -> None:
    """Bring the database to head at start-up (see the module docstring)."""
    load_models()
    inspector = inspect(engine)
    existing = set(inspector.get_table_names())
    if VERSION_TABLE in existing or not existing & set(SQLModel.metadata.tables):
        upgrade(engine)
        return
    missing = sorted(_TABLES_BEFORE_MIGRATIONS - existing)
    if not missing and "batch_first_index" not in {
        column["name"] for column in inspector.get_columns("log_entry")
    }:
        missing = ["log_entry.batch_first_index"]
    if missing:
        raise SchemaError(
            f"the database {engine.url.render_as_string(hide_password=True)} was made by "
            f"an older version without migrations and lacks {', '.join(missing)}: "
            "move it aside and start again"
        )
    _upgrade_adopting(engine, BEFORE_MIGRATIONS)


BEFORE_MIGRATIONS = "0001"
"""The revision whose schema the app's start-up made before Alembic managed it."""

_TABLES_BEFORE_MIGRATIONS = frozenset(
    {
        "account",
        "account_movement",
        "anchor",
        "auth_nonce",
        "checkpoint",
        "idempotency_key",
        "listing",
        "listing_provider",
        "listing_search",
        "listing_search_tag",
        "listing_version",
        "log_entry",
        "offer_seats",
        "orders",
        "participant",
        "promise_batch",
        "tree_node",
        "used_quote",
    }
)
"""The tables of revision ``0001`` (frozen, as the revision is)."""


def _upgrade_adopting(engine: Engine, revision: str) -> None:
    # The mark is set inside the migration's locked transaction, and only while the
    # database has none: a second worker starting at once finds head, not a mark to redo.
    config = make_config(engine)
    config.attributes["adopt_at"] = revision
    command.upgrade(config, "head")
