"""search: gram indexes for 1-2 character terms, per-listing tags, facet counts.

``listing_search`` gains ``tags`` (the listing's distinct tags, JSON; JSONB on
PostgreSQL), ``grams`` and ``gram_tt`` (see ``exchange.listings.search.index``),
filled here for the rows already indexed; its price index becomes
``(price_fen, listing_id)`` (the price sorts' ties, every free listing, in order).
Raw SQL, copied from ``exchange.listings.search.index`` (the app creates the same objects with
``IF NOT EXISTS`` at start-up; tests/exchange/test_search_index.py checks that
both ways give the same schema). Frozen: the grams and the facet rebuild it runs
are copies too, as they were at this revision, so this file imports no live code
and a later change there cannot change what it does:

* SQLite: ``listing_search_fts`` re-created with ``trigram case_sensitive 1``
  (the text is folded before it is indexed: with the tokenizer folding nothing
  more, a match is exactly a substring) and rebuilt; ``listing_search_au`` fires
  only when ``doc`` changes (an edit of the price no longer rewrites the
  listing's trigrams); the FTS5 tables ``listing_search_gram`` and
  ``listing_search_gram_tt`` and their three triggers; the tables
  ``listing_search_facet`` and ``listing_search_bitmap`` (facet counts and
  bitmaps) and their three triggers.
* PostgreSQL: the GIN index ``listing_search_gram_gin`` on the gram array, and
  both GIN indexes with a 256 kB pending list (searches scan it whole); the
  table ``listing_search_facet`` (facet counts), filled, and the PL/pgSQL trigger
  ``listing_search_facet_count`` (function of the same name) that keeps it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:00:00
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEX = "'0123456789abcdef'"
# (S608: the SQL below is built from fixed fragments and a trigger's row names.)


def _values(r: str) -> str:
    return (
        f"SELECT 'category' AS facet, {r}.category AS value "  # noqa: S608
        f"UNION SELECT 'classification', {r}.classification "
        f"WHERE {r}.classification IS NOT NULL "
        f"UNION SELECT 'pricing_model', {r}.pricing_model "
        f"UNION SELECT 'tag', value FROM json_each({r}.tags)"
    )


def _flip(r: str, on: bool) -> str:
    digit = f"(1024 - (({r}.id & 4095) >> 2))"
    old = f"(instr({_HEX}, substr(bits, {digit}, 1)) - 1)"
    new = f"({old} | (1 << ({r}.id & 3)))" if on else f"({old} & ~(1 << ({r}.id & 3)))"
    return (
        f"substr(bits, 1, {digit} - 1) || substr({_HEX}, {new} + 1, 1) || substr(bits, {digit} + 1)"
    )


def _bitmap_rows(r: str) -> str:
    return (
        f"SELECT b.rowid FROM ({_values(r)}) AS v JOIN listing_search_bitmap AS b "  # noqa: S608
        f"ON b.facet = v.facet AND b.value = v.value AND b.chunk = {r}.id >> 12"
    )


def _facet_rows(r: str) -> str:
    return (
        f"SELECT f.rowid FROM ({_values(r)}) AS v JOIN listing_search_facet AS f "  # noqa: S608
        "ON f.facet = v.facet AND f.value = v.value"
    )


def _facets_add(r: str) -> str:
    return (
        "INSERT INTO listing_search_facet (facet, value, listings) "  # noqa: S608
        f"SELECT facet, value, 1 FROM ({_values(r)}) WHERE true "
        "ON CONFLICT (facet, value) DO UPDATE SET listings = listings + 1; "
        "INSERT OR IGNORE INTO listing_search_bitmap (facet, value, chunk, bits) "
        f"SELECT facet, value, {r}.id >> 12, printf('%.*c', 1024, '0') "
        f"FROM ({_values(r)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(r, True)} "
        f"WHERE rowid IN ({_bitmap_rows(r)}); "
    )


def _facets_remove(r: str) -> str:
    return (
        "UPDATE listing_search_facet SET listings = listings - 1 "  # noqa: S608
        f"WHERE rowid IN ({_facet_rows(r)}); "
        f"DELETE FROM listing_search_facet WHERE listings <= 0 AND rowid IN ({_facet_rows(r)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(r, False)} "
        f"WHERE rowid IN ({_bitmap_rows(r)}); "
        "DELETE FROM listing_search_bitmap WHERE bits = printf('%.*c', 1024, '0') "
        f"AND rowid IN ({_bitmap_rows(r)}); "
    )


def _grams_add(r: str) -> str:
    return (
        f"INSERT INTO listing_search_gram(rowid, grams) VALUES ({r}.id, {r}.grams); "  # noqa: S608
        f"INSERT INTO listing_search_gram_tt(rowid, gram_tt) VALUES ({r}.id, {r}.gram_tt); "
    )


def _grams_remove(r: str) -> str:
    return (
        "INSERT INTO listing_search_gram(listing_search_gram, rowid, grams) "  # noqa: S608
        f"VALUES ('delete', {r}.id, {r}.grams); "
        "INSERT INTO listing_search_gram_tt(listing_search_gram_tt, rowid, gram_tt) "
        f"VALUES ('delete', {r}.id, {r}.gram_tt); "
    )


_TRIGRAM = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_fts USING fts5("
    "doc, content='listing_search', content_rowid='id', tokenize='trigram{}')"
)
_TRIGRAM_UPDATE = (
    "CREATE TRIGGER IF NOT EXISTS listing_search_au AFTER UPDATE{} ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(listing_search_fts, rowid, doc) "
    "VALUES ('delete', old.id, old.doc); "
    "INSERT INTO listing_search_fts(rowid, doc) VALUES (new.id, new.doc); END"
)
_GRAM_TOKENIZE = "'ascii tokenchars ''!\"#$%&''''()*+,-./:;<=>?@[\\]^_`{|}~'''"

_SQLITE_INDEXES = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_gram USING fts5("
    "grams, content='listing_search', content_rowid='id', "
    f"tokenize={_GRAM_TOKENIZE}, detail='none')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_gram_tt USING fts5("
    "gram_tt, content='listing_search', content_rowid='id', "
    f"tokenize={_GRAM_TOKENIZE}, detail='none')",
    "CREATE TRIGGER IF NOT EXISTS listing_search_gram_ai AFTER INSERT ON listing_search BEGIN "
    f"{_grams_add('new')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_gram_ad AFTER DELETE ON listing_search BEGIN "
    f"{_grams_remove('old')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_gram_au "
    "AFTER UPDATE OF grams, gram_tt ON listing_search BEGIN "
    f"{_grams_remove('old')}{_grams_add('new')}END",
    "CREATE TABLE IF NOT EXISTS listing_search_facet ("
    "facet TEXT NOT NULL, value TEXT NOT NULL, listings INTEGER NOT NULL, "
    "PRIMARY KEY (facet, value))",
    "CREATE INDEX IF NOT EXISTS listing_search_facet_rank "
    "ON listing_search_facet (facet, listings DESC, value)",
    "CREATE TABLE IF NOT EXISTS listing_search_bitmap ("
    "facet TEXT NOT NULL, value TEXT NOT NULL, chunk INTEGER NOT NULL, bits TEXT NOT NULL, "
    "PRIMARY KEY (facet, value, chunk))",
    "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ai AFTER INSERT ON listing_search BEGIN "
    f"{_facets_add('new')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ad AFTER DELETE ON listing_search BEGIN "
    f"{_facets_remove('old')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_facet_au "
    "AFTER UPDATE OF id, category, classification, pricing_model, tags ON listing_search BEGIN "
    f"{_facets_remove('old')}{_facets_add('new')}END",
)

_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS listing_search_facet_au",
    "DROP TRIGGER IF EXISTS listing_search_facet_ad",
    "DROP TRIGGER IF EXISTS listing_search_facet_ai",
    "DROP TABLE IF EXISTS listing_search_bitmap",
    "DROP TABLE IF EXISTS listing_search_facet",
    "DROP TRIGGER IF EXISTS listing_search_gram_au",
    "DROP TRIGGER IF EXISTS listing_search_gram_ad",
    "DROP TRIGGER IF EXISTS listing_search_gram_ai",
    "DROP TABLE IF EXISTS listing_search_gram_tt",
    "DROP TABLE IF EXISTS listing_search_gram",
)

_POSTGRES_GRAM_INDEX = (
    "CREATE INDEX IF NOT EXISTS listing_search_gram_gin ON listing_search "
    "USING gin (string_to_array(grams, ' ')) WITH (gin_pending_list_limit = 256)"
)

_FACET_TABLE = (
    "CREATE TABLE IF NOT EXISTS listing_search_facet ("
    "facet TEXT NOT NULL, value TEXT NOT NULL, listings INTEGER NOT NULL, "
    "PRIMARY KEY (facet, value))"
)
_FACET_RANK = (
    "CREATE INDEX IF NOT EXISTS listing_search_facet_rank "
    "ON listing_search_facet (facet, listings DESC, value)"
)


def _postgres_changes(rows: str, delta: int) -> str:
    return (
        f"SELECT 'category' AS facet, category AS value, {delta} AS delta FROM {rows} "  # noqa: S608
        f"UNION ALL SELECT 'classification', classification, {delta} FROM {rows} "
        "WHERE classification IS NOT NULL "
        f"UNION ALL SELECT 'pricing_model', pricing_model, {delta} FROM {rows} "
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


_POSTGRES_BOTH = (
    _postgres_changes("old_rows", -1) + " UNION ALL " + _postgres_changes("new_rows", 1)
)
_POSTGRES_FACET_FUNCTION = (
    "CREATE OR REPLACE FUNCTION listing_search_facet_count() RETURNS trigger "  # noqa: S608
    "LANGUAGE plpgsql AS $body$ BEGIN "
    "IF TG_OP = 'INSERT' THEN "
    f"{_postgres_apply(_postgres_changes('new_rows', 1))}"
    "ELSIF TG_OP = 'DELETE' THEN "
    f"{_postgres_apply(_postgres_changes('old_rows', -1))}"
    "ELSE "
    f"{_postgres_apply(_POSTGRES_BOTH)}"
    "END IF; "
    "DELETE FROM listing_search_facet WHERE listings <= 0; "
    "RETURN NULL; END $body$"
)
_POSTGRES_FACET_TRIGGERS = tuple(
    f"CREATE TRIGGER listing_search_facet_{name} AFTER {event} ON listing_search "
    f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION listing_search_facet_count()"
    for name, event, tables in (
        ("ai", "INSERT", "NEW TABLE AS new_rows"),
        ("ad", "DELETE", "OLD TABLE AS old_rows"),
        ("au", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    )
)
_POSTGRES_FACET_FILL = (
    "INSERT INTO listing_search_facet (facet, value, listings) "
    "SELECT 'category', category, count(*) FROM listing_search GROUP BY category "
    "UNION ALL SELECT 'classification', classification, count(*) FROM listing_search "
    "WHERE classification IS NOT NULL GROUP BY classification "
    "UNION ALL SELECT 'pricing_model', pricing_model, count(*) FROM listing_search "
    "GROUP BY pricing_model "
    "UNION ALL SELECT 'tag', t, count(DISTINCT id) FROM listing_search, "
    "jsonb_array_elements_text(tags) AS t GROUP BY t"
)

_NEW_COLUMNS = ("gram_tt", "grams", "tags")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    tags_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    # plain ALTER TABLE ADD COLUMN (a batch copy of the table would drop its triggers)
    op.add_column(
        "listing_search",
        sa.Column("tags", tags_type, nullable=False, server_default=sa.text("'[]'")),
    )
    op.add_column(
        "listing_search", sa.Column("grams", sa.Text(), nullable=False, server_default="")
    )
    op.add_column(
        "listing_search", sa.Column("gram_tt", sa.Text(), nullable=False, server_default="")
    )
    op.drop_index("ix_listing_search_price_fen", table_name="listing_search")
    op.create_index(
        "ix_listing_search_price_listing", "listing_search", ["price_fen", "listing_id"]
    )
    if sqlite:  # before the backfill's UPDATEs: from now on only a new doc re-indexes
        op.execute("DROP TRIGGER IF EXISTS listing_search_au")
        op.execute(_TRIGRAM_UPDATE.format(" OF doc"))
    _backfill(bind)
    if sqlite:
        _rebuild_trigram_index(" case_sensitive 1")
        for statement in _SQLITE_INDEXES:
            op.execute(statement)
        for table in ("listing_search_gram", "listing_search_gram_tt"):
            op.execute(f"INSERT INTO {table}({table}) VALUES ('rebuild')")  # noqa: S608
        _rebuild_facet_index(bind)
    elif bind.dialect.name == "postgresql":
        for statement in (
            _POSTGRES_GRAM_INDEX,
            "ALTER INDEX IF EXISTS listing_search_doc_trgm SET (gin_pending_list_limit = 256)",
            _FACET_TABLE,
            _FACET_RANK,
            _POSTGRES_FACET_FUNCTION,
            *_POSTGRES_FACET_TRIGGERS,
            _POSTGRES_FACET_FILL,
        ):
            bind.exec_driver_sql(statement)


def _backfill(bind: sa.Connection) -> None:
    """The new columns of the rows already indexed (from the listing's tags and the
    folded text the row holds)."""
    rows = bind.execute(
        sa.text(
            "SELECT s.id, s.title_fold, s.tags_fold, s.desc_fold, l.tags "
            "FROM listing_search s JOIN listing l ON l.id = s.listing_id"
        )
    ).all()
    tags_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    update = sa.text(
        "UPDATE listing_search SET tags = :tags, grams = :grams, gram_tt = :tt WHERE id = :id"
    ).bindparams(sa.bindparam("tags", type_=tags_type))
    values = []
    for row_id, title, tags_fold, description, tags in rows:
        listing_tags = tags if isinstance(tags, list) else json.loads(tags or "[]")
        values.append(
            {
                "id": row_id,
                "tags": list(dict.fromkeys(listing_tags)),
                "grams": _grams(title, tags_fold, description),
                "tt": _grams(title, tags_fold),
            }
        )
    for start in range(0, len(values), 1000):
        bind.execute(update, values[start : start + 1000])


def _is_word_break(ch: str) -> bool:
    return ch.isspace() or ord(ch) < 32 or ch == "\x7f"


def _grams(*texts: str) -> str:
    """The distinct 1- and 2-character substrings of the words of ``texts``
    (already folded), sorted, space separated: the tokens of the gram index."""
    found: set[str] = set()
    for value in texts:
        for word in "".join(" " if _is_word_break(ch) else ch for ch in value).split():
            found.update(word)
            found.update(word[i : i + 2] for i in range(len(word) - 1))
    return " ".join(sorted(found))


def _facet_pairs(
    category: str, classification: str | None, pricing_model: str, tags: Iterable[str]
) -> set[tuple[str, str]]:
    """The (facet, value) pairs of one listing, as the SQLite triggers count them."""
    pairs = {("category", category), ("pricing_model", pricing_model)}
    if classification is not None:
        pairs.add(("classification", classification))
    pairs.update(("tag", tag) for tag in tags)
    return pairs


def _rebuild_facet_index(bind: sa.Connection) -> None:
    """SQLite's ``listing_search_facet`` and ``listing_search_bitmap`` recomputed
    from ``listing_search``: bitmaps of 4,096 ids a row (``chunk = id >> 12``),
    each a hex number of 1,024 digits."""
    counts: dict[tuple[str, str], int] = {}
    bitmaps: dict[tuple[str, str, int], int] = {}
    rows = bind.execute(
        sa.text("SELECT id, category, classification, pricing_model, tags FROM listing_search")
    )
    for listing, category, classification, pricing_model, tags in rows:
        chunk, bit = listing >> 12, 1 << (listing & 4095)
        for facet, value in _facet_pairs(category, classification, pricing_model, json.loads(tags)):
            counts[facet, value] = counts.get((facet, value), 0) + 1
            bitmaps[facet, value, chunk] = bitmaps.get((facet, value, chunk), 0) | bit
    bind.execute(sa.text("DELETE FROM listing_search_facet"))
    bind.execute(sa.text("DELETE FROM listing_search_bitmap"))
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


def _rebuild_trigram_index(options: str) -> None:
    op.execute("DROP TABLE IF EXISTS listing_search_fts")
    op.execute(_TRIGRAM.format(options))
    op.execute("INSERT INTO listing_search_fts(listing_search_fts) VALUES ('rebuild')")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in _SQLITE_DROP:
            op.execute(statement)
        op.execute("DROP TRIGGER IF EXISTS listing_search_au")
        op.execute(_TRIGRAM_UPDATE.format(""))
        _rebuild_trigram_index("")
        for column in _NEW_COLUMNS:
            # SQLite 3.35+ drops a column in place (a batch copy would drop the triggers)
            op.execute(f"ALTER TABLE listing_search DROP COLUMN {column}")
    else:
        if bind.dialect.name == "postgresql":
            for name in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS listing_search_facet_{name} ON listing_search")
            op.execute("DROP FUNCTION IF EXISTS listing_search_facet_count()")
            op.execute("DROP TABLE IF EXISTS listing_search_facet")
            op.execute("DROP INDEX IF EXISTS listing_search_gram_gin")
            op.execute(
                "ALTER INDEX IF EXISTS listing_search_doc_trgm RESET (gin_pending_list_limit)"
            )
        for column in _NEW_COLUMNS:
            op.drop_column("listing_search", column)
    op.drop_index("ix_listing_search_price_listing", table_name="listing_search")
    op.create_index("ix_listing_search_price_fen", "listing_search", ["price_fen"])
