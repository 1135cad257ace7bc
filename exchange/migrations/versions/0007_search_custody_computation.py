"""search: custody and computation as filters and facets.

``listing_search`` gains ``custody`` (``provider`` | ``exchange``) and
``computation`` (whether the listing's current version offers computations),
filled here from ``listing`` for the rows already indexed; the facet index
``ix_listing_search_facets`` covers them too. The facet counts gain the facets
``custody`` and ``computation`` (values ``true``/``false``):

* SQLite: the three facet triggers re-created to count them (and, on update, to
  fire when they change); their counts and bitmaps added for the rows there.
* PostgreSQL: the function ``listing_search_facet_count`` replaced to count
  them; their counts added for the rows there.

Raw SQL, copied from ``exchange.listings.search.index`` as it is at this
revision (tests/exchange/test_search_index.py checks that the migrations and
start-up give the same schema). Frozen like 0003: it imports no live code.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEX = "'0123456789abcdef'"
_FACET_COLUMNS = ("category", "classification", "pricing_model")
_NEW_FACETS = ("custody", "computation")
# (S608: the SQL below is built from fixed fragments and a trigger's row names.)


def _flag(column: str) -> str:
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"


def _values(r: str, new: bool) -> str:
    """The (facet, value) pairs of trigger row ``r``: with custody and computation
    (``new``) or as 0003 counted them."""
    added = (
        f"UNION SELECT 'custody', {r}.custody "
        f"UNION SELECT 'computation', {_flag(r + '.computation')} "
        if new
        else ""
    )
    return (
        f"SELECT 'category' AS facet, {r}.category AS value "  # noqa: S608
        f"UNION SELECT 'classification', {r}.classification "
        f"WHERE {r}.classification IS NOT NULL "
        f"UNION SELECT 'pricing_model', {r}.pricing_model "
        f"{added}"
        f"UNION SELECT 'tag', value FROM json_each({r}.tags)"
    )


def _flip(r: str, on: bool) -> str:
    digit = f"(1024 - (({r}.id & 4095) >> 2))"
    old = f"(instr({_HEX}, substr(bits, {digit}, 1)) - 1)"
    new = f"({old} | (1 << ({r}.id & 3)))" if on else f"({old} & ~(1 << ({r}.id & 3)))"
    return (
        f"substr(bits, 1, {digit} - 1) || substr({_HEX}, {new} + 1, 1) || substr(bits, {digit} + 1)"
    )


def _bitmap_rows(r: str, new: bool) -> str:
    return (
        f"SELECT b.rowid FROM ({_values(r, new)}) AS v JOIN listing_search_bitmap AS b "  # noqa: S608
        f"ON b.facet = v.facet AND b.value = v.value AND b.chunk = {r}.id >> 12"
    )


def _facet_rows(r: str, new: bool) -> str:
    return (
        f"SELECT f.rowid FROM ({_values(r, new)}) AS v JOIN listing_search_facet AS f "  # noqa: S608
        "ON f.facet = v.facet AND f.value = v.value"
    )


def _facets_add(r: str, new: bool) -> str:
    return (
        "INSERT INTO listing_search_facet (facet, value, listings) "  # noqa: S608
        f"SELECT facet, value, 1 FROM ({_values(r, new)}) WHERE true "
        "ON CONFLICT (facet, value) DO UPDATE SET listings = listings + 1; "
        "INSERT OR IGNORE INTO listing_search_bitmap (facet, value, chunk, bits) "
        f"SELECT facet, value, {r}.id >> 12, printf('%.*c', 1024, '0') "
        f"FROM ({_values(r, new)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(r, True)} "
        f"WHERE rowid IN ({_bitmap_rows(r, new)}); "
    )


def _facets_remove(r: str, new: bool) -> str:
    return (
        "UPDATE listing_search_facet SET listings = listings - 1 "  # noqa: S608
        f"WHERE rowid IN ({_facet_rows(r, new)}); "
        "DELETE FROM listing_search_facet WHERE listings <= 0 "
        f"AND rowid IN ({_facet_rows(r, new)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(r, False)} "
        f"WHERE rowid IN ({_bitmap_rows(r, new)}); "
        "DELETE FROM listing_search_bitmap WHERE bits = printf('%.*c', 1024, '0') "
        f"AND rowid IN ({_bitmap_rows(r, new)}); "
    )


def _sqlite_triggers(new: bool) -> tuple[str, ...]:
    updated = (
        "id, category, classification, pricing_model, custody, computation, tags "
        if new
        else "id, category, classification, pricing_model, tags "
    )
    return (
        "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ai AFTER INSERT ON listing_search BEGIN "
        f"{_facets_add('new', new)}END",
        "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ad AFTER DELETE ON listing_search BEGIN "
        f"{_facets_remove('old', new)}END",
        "CREATE TRIGGER IF NOT EXISTS listing_search_facet_au "
        f"AFTER UPDATE OF {updated}ON listing_search BEGIN "
        f"{_facets_remove('old', new)}{_facets_add('new', new)}END",
    )


def _postgres_changes(rows: str, delta: int, new: bool) -> str:
    added = (
        f"UNION ALL SELECT 'custody', custody, {delta} FROM {rows} "  # noqa: S608
        f"UNION ALL SELECT 'computation', {_flag('computation')}, {delta} FROM {rows} "
        if new
        else ""
    )
    return (
        f"SELECT 'category' AS facet, category AS value, {delta} AS delta FROM {rows} "  # noqa: S608
        f"UNION ALL SELECT 'classification', classification, {delta} FROM {rows} "
        "WHERE classification IS NOT NULL "
        f"UNION ALL SELECT 'pricing_model', pricing_model, {delta} FROM {rows} "
        f"{added}"
        f"UNION ALL SELECT 'tag', t, {delta} FROM {rows} AS r, LATERAL "
        "(SELECT DISTINCT t FROM jsonb_array_elements_text(r.tags) AS t) AS d"
    )


def _postgres_apply(changes: str) -> str:
    return (
        "INSERT INTO listing_search_facet AS f (facet, value, listings) "  # noqa: S608
        f"SELECT facet, value, sum(delta) FROM ({changes}) AS c GROUP BY facet, value "
        "HAVING sum(delta) <> 0 ORDER BY facet, value "
        "ON CONFLICT (facet, value) DO UPDATE SET listings = f.listings + excluded.listings; "
    )


def _postgres_function(new: bool) -> str:
    both = (
        _postgres_changes("old_rows", -1, new)
        + " UNION ALL "
        + _postgres_changes("new_rows", 1, new)
    )
    return (
        "CREATE OR REPLACE FUNCTION listing_search_facet_count() RETURNS trigger "  # noqa: S608
        "LANGUAGE plpgsql AS $body$ BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        f"{_postgres_apply(_postgres_changes('new_rows', 1, new))}"
        "ELSIF TG_OP = 'DELETE' THEN "
        f"{_postgres_apply(_postgres_changes('old_rows', -1, new))}"
        "ELSE "
        f"{_postgres_apply(both)}"
        "END IF; "
        "DELETE FROM listing_search_facet WHERE listings <= 0; "
        "RETURN NULL; END $body$"
    )


_SQLITE_DROP_TRIGGERS = tuple(
    f"DROP TRIGGER IF EXISTS listing_search_facet_{name}" for name in ("ai", "ad", "au")
)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    # plain ALTER TABLE ADD COLUMN (a batch copy of the table would drop its triggers)
    op.add_column(
        "listing_search",
        sa.Column(
            "custody",
            sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
            server_default="provider",
        ),
    )
    op.add_column(
        "listing_search",
        sa.Column("computation", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.drop_index("ix_listing_search_facets", table_name="listing_search")
    op.create_index("ix_listing_search_facets", "listing_search", [*_FACET_COLUMNS, *_NEW_FACETS])
    if dialect == "sqlite":  # the old triggers do not fire on the new columns anyway
        for statement in _SQLITE_DROP_TRIGGERS:
            op.execute(statement)
    # before PostgreSQL's function counts the new facets: its update trigger then
    # sees every other facet unchanged
    json_type = "json_typeof" if dialect == "postgresql" else "json_type"
    op.execute(
        "UPDATE listing_search SET "  # noqa: S608
        "custody = (SELECT l.custody FROM listing AS l WHERE l.id = listing_search.listing_id), "
        f"computation = (SELECT coalesce({json_type}(l.computation), 'null') <> 'null' "
        "FROM listing AS l WHERE l.id = listing_search.listing_id)"
    )
    if dialect == "sqlite":
        for statement in _sqlite_triggers(new=True):
            op.execute(statement)
        _add_sqlite_facets(bind)
    elif dialect == "postgresql":
        bind.exec_driver_sql(_postgres_function(new=True))
        bind.exec_driver_sql(
            "INSERT INTO listing_search_facet (facet, value, listings) "  # noqa: S608
            "SELECT 'custody', custody, count(*) FROM listing_search GROUP BY custody "
            f"UNION ALL SELECT 'computation', {_flag('computation')}, count(*) "
            "FROM listing_search GROUP BY computation"
        )


def _add_sqlite_facets(bind: sa.Connection) -> None:
    """The custody and computation counts and bitmaps (4,096 ids a row, ``chunk =
    id >> 12``, each a hex number of 1,024 digits) of the rows indexed."""
    counts: dict[tuple[str, str], int] = {}
    bitmaps: dict[tuple[str, str, int], int] = {}
    rows = bind.execute(sa.text("SELECT id, custody, computation FROM listing_search"))
    for listing, custody, computation in rows:
        chunk, bit = listing >> 12, 1 << (listing & 4095)
        for pair in (("custody", custody), ("computation", "true" if computation else "false")):
            counts[pair] = counts.get(pair, 0) + 1
            bitmaps[(*pair, chunk)] = bitmaps.get((*pair, chunk), 0) | bit
    if counts:
        bind.execute(
            sa.text(
                "INSERT INTO listing_search_facet (facet, value, listings) VALUES (:f, :v, :n)"
            ),
            [{"f": f, "v": v, "n": n} for (f, v), n in counts.items()],
        )
        bind.execute(
            sa.text(
                "INSERT INTO listing_search_bitmap (facet, value, chunk, bits) "
                "VALUES (:f, :v, :c, :b)"
            ),
            [
                {"f": f, "v": v, "c": c, "b": format(b, "01024x")}
                for (f, v, c), b in bitmaps.items()
            ],
        )


def downgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    forget = "DELETE FROM {} WHERE facet IN ('custody', 'computation')"
    if dialect == "sqlite":
        for statement in _SQLITE_DROP_TRIGGERS:
            op.execute(statement)
        op.execute(forget.format("listing_search_bitmap"))
        op.execute(forget.format("listing_search_facet"))
        for statement in _sqlite_triggers(new=False):
            op.execute(statement)
    elif dialect == "postgresql":
        bind.exec_driver_sql(_postgres_function(new=False))
        op.execute(forget.format("listing_search_facet"))
    op.drop_index("ix_listing_search_facets", table_name="listing_search")
    op.create_index("ix_listing_search_facets", "listing_search", list(_FACET_COLUMNS))
    for column in _NEW_FACETS:
        if dialect == "sqlite":
            # SQLite 3.35+ drops a column in place (a batch copy would drop the triggers)
            op.execute(f"ALTER TABLE listing_search DROP COLUMN {column}")
        else:
            op.drop_column("listing_search", column)
