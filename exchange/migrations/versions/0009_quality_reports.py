"""quality: quality reports, their countersignatures, and the grade in search.

``quality_report`` (exchange.listings.quality): one row per ``quality.reported``
record; ``quality_countersignature``: one row per ``quality.countersigned``
record (docs/quality.md).

``listing_search`` gains ``grade`` (the current version's quality grade, null
without a report) as a filter and a facet, counted like 0007's custody (values
``A``..``D``, none for null, like classification):

* SQLite: the three facet triggers re-created to count it (and, on update, to
  fire when it changes); there are no grades to count yet (the table is new).
* PostgreSQL: the function ``listing_search_facet_count`` replaced to count it.

Raw SQL, copied from 0007 as it is at this revision, with the grade added.
Frozen: it imports no live code.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_HEX = "'0123456789abcdef'"
# (S608: the SQL below is built from fixed fragments and a trigger's row names.)


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _flag(column: str) -> str:
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"


def _values(r: str, grade: bool) -> str:
    """The (facet, value) pairs of trigger row ``r``: with the grade (``grade``) or
    as 0007 counted them."""
    added = f"UNION SELECT 'grade', {r}.grade WHERE {r}.grade IS NOT NULL " if grade else ""
    return (
        f"SELECT 'category' AS facet, {r}.category AS value "  # noqa: S608
        f"UNION SELECT 'classification', {r}.classification "
        f"WHERE {r}.classification IS NOT NULL "
        f"UNION SELECT 'pricing_model', {r}.pricing_model "
        f"UNION SELECT 'custody', {r}.custody "
        f"UNION SELECT 'computation', {_flag(r + '.computation')} "
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


def _bitmap_rows(r: str, grade: bool) -> str:
    return (
        f"SELECT b.rowid FROM ({_values(r, grade)}) AS v JOIN listing_search_bitmap AS b "  # noqa: S608
        f"ON b.facet = v.facet AND b.value = v.value AND b.chunk = {r}.id >> 12"
    )


def _facet_rows(r: str, grade: bool) -> str:
    return (
        f"SELECT f.rowid FROM ({_values(r, grade)}) AS v JOIN listing_search_facet AS f "  # noqa: S608
        "ON f.facet = v.facet AND f.value = v.value"
    )


def _facets_add(r: str, grade: bool) -> str:
    return (
        "INSERT INTO listing_search_facet (facet, value, listings) "  # noqa: S608
        f"SELECT facet, value, 1 FROM ({_values(r, grade)}) WHERE true "
        "ON CONFLICT (facet, value) DO UPDATE SET listings = listings + 1; "
        "INSERT OR IGNORE INTO listing_search_bitmap (facet, value, chunk, bits) "
        f"SELECT facet, value, {r}.id >> 12, printf('%.*c', 1024, '0') "
        f"FROM ({_values(r, grade)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(r, True)} "
        f"WHERE rowid IN ({_bitmap_rows(r, grade)}); "
    )


def _facets_remove(r: str, grade: bool) -> str:
    return (
        "UPDATE listing_search_facet SET listings = listings - 1 "  # noqa: S608
        f"WHERE rowid IN ({_facet_rows(r, grade)}); "
        "DELETE FROM listing_search_facet WHERE listings <= 0 "
        f"AND rowid IN ({_facet_rows(r, grade)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(r, False)} "
        f"WHERE rowid IN ({_bitmap_rows(r, grade)}); "
        "DELETE FROM listing_search_bitmap WHERE bits = printf('%.*c', 1024, '0') "
        f"AND rowid IN ({_bitmap_rows(r, grade)}); "
    )


def _sqlite_triggers(grade: bool) -> tuple[str, ...]:
    updated = "id, category, classification, pricing_model, custody, computation, " + (
        "grade, tags " if grade else "tags "
    )
    return (
        "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ai AFTER INSERT ON listing_search BEGIN "
        f"{_facets_add('new', grade)}END",
        "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ad AFTER DELETE ON listing_search BEGIN "
        f"{_facets_remove('old', grade)}END",
        "CREATE TRIGGER IF NOT EXISTS listing_search_facet_au "
        f"AFTER UPDATE OF {updated}ON listing_search BEGIN "
        f"{_facets_remove('old', grade)}{_facets_add('new', grade)}END",
    )


def _postgres_changes(rows: str, delta: int, grade: bool) -> str:
    added = (
        f"UNION ALL SELECT 'grade', grade, {delta} FROM {rows} WHERE grade IS NOT NULL "  # noqa: S608
        if grade
        else ""
    )
    return (
        f"SELECT 'category' AS facet, category AS value, {delta} AS delta FROM {rows} "  # noqa: S608
        f"UNION ALL SELECT 'classification', classification, {delta} FROM {rows} "
        "WHERE classification IS NOT NULL "
        f"UNION ALL SELECT 'pricing_model', pricing_model, {delta} FROM {rows} "
        f"UNION ALL SELECT 'custody', custody, {delta} FROM {rows} "
        f"UNION ALL SELECT 'computation', {_flag('computation')}, {delta} FROM {rows} "
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


def _postgres_function(grade: bool) -> str:
    both = (
        _postgres_changes("old_rows", -1, grade)
        + " UNION ALL "
        + _postgres_changes("new_rows", 1, grade)
    )
    return (
        "CREATE OR REPLACE FUNCTION listing_search_facet_count() RETURNS trigger "  # noqa: S608
        "LANGUAGE plpgsql AS $body$ BEGIN "
        "IF TG_OP = 'INSERT' THEN "
        f"{_postgres_apply(_postgres_changes('new_rows', 1, grade))}"
        "ELSIF TG_OP = 'DELETE' THEN "
        f"{_postgres_apply(_postgres_changes('old_rows', -1, grade))}"
        "ELSE "
        f"{_postgres_apply(both)}"
        "END IF; "
        "DELETE FROM listing_search_facet WHERE listings <= 0; "
        "RETURN NULL; END $body$"
    )


_SQLITE_DROP_TRIGGERS = tuple(
    f"DROP TRIGGER IF EXISTS listing_search_facet_{name}" for name in ("ai", "ad", "au")
)
_FACET_COLUMNS = ("category", "classification", "pricing_model", "custody", "computation")


def _search_grade(grade: bool) -> None:
    """The facet counting with (``grade``) or without the grade."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in _SQLITE_DROP_TRIGGERS:
            op.execute(statement)
        for statement in _sqlite_triggers(grade):
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        bind.exec_driver_sql(_postgres_function(grade))


def upgrade() -> None:
    op.create_table(
        "quality_report",
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("report_sm3", _text(64), nullable=False),
        sa.Column("signer_key_id", _text(64), nullable=False),
        sa.Column("signer_role", _text(16), nullable=False),
        sa.Column("grade", _text(1), nullable=False),
        sa.Column("score_bps", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_hash"),
        sa.UniqueConstraint(
            "listing_id", "version", "report_sm3", "signer_key_id", name="uq_quality_report"
        ),
    )
    op.create_index(
        op.f("ix_quality_report_listing_id"), "quality_report", ["listing_id"], unique=False
    )
    op.create_index(
        op.f("ix_quality_report_report_sm3"), "quality_report", ["report_sm3"], unique=False
    )
    op.create_table(
        "quality_countersignature",
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("report_sm3", _text(64), nullable=False),
        sa.Column("assessor_key_id", _text(64), nullable=False),
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("countersigned_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("listing_id", "version", "report_sm3", "assessor_key_id"),
    )

    # plain ALTER TABLE ADD COLUMN (a batch copy of the table would drop its triggers);
    # no listing has a grade yet, so there is nothing to count
    op.add_column("listing_search", sa.Column("grade", _text(1), nullable=True))
    op.drop_index("ix_listing_search_facets", table_name="listing_search")
    op.create_index("ix_listing_search_facets", "listing_search", [*_FACET_COLUMNS, "grade"])
    _search_grade(True)


def downgrade() -> None:
    _search_grade(False)
    op.execute("DELETE FROM listing_search_facet WHERE facet = 'grade'")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM listing_search_bitmap WHERE facet = 'grade'")
    op.drop_index("ix_listing_search_facets", table_name="listing_search")
    op.create_index("ix_listing_search_facets", "listing_search", list(_FACET_COLUMNS))
    # SQLite 3.35+ drops a column in place (a batch copy would drop the triggers)
    op.drop_column("listing_search", "grade")
    op.drop_table("quality_countersignature")
    op.drop_index(op.f("ix_quality_report_report_sm3"), table_name="quality_report")
    op.drop_index(op.f("ix_quality_report_listing_id"), table_name="quality_report")
    op.drop_table("quality_report")
