"""The search index of PUBLISHED listings: one denormalised row per listing.

Tables (created by :func:`create_search_tables` at startup, next to the others):

* ``listing_search``: ``id`` (integer key), ``listing_id`` (unique), the
  filter/sort columns (``category``, ``classification``, ``pricing_model``,
  ``custody``, ``computation`` (whether the current version offers
  computations), ``price_fen``, ``published_at``, ``title_key``), the listing's distinct
  ``tags`` (JSON array, in order), the case-folded text (``title_fold``,
  ``tags_fold``, ``desc_fold`` and ``doc``, their concatenation) and the
  short-term *grams* of that text (``grams``: of all of it, ``gram_tt``: of the
  title and tags alone; see :func:`grams`).
* ``listing_search_tag``: ``(tag, listing_id)``, for the "all of these tags"
  filter and the tag facet (its ``(listing_id, tag)`` index covers the facet).

Indexes for filter + sort (``(category, price_fen)``, ``(category,
published_at)``, ``(category, pricing_model, published_at)``,
``(pricing_model, price_fen)``, ``title_key``, ``(price_fen, listing_id)``) are
declared on the models and created at startup also for tables that already exist.

Full text, both backends with the same *substring* semantics (Chinese has no
spaces, so a query term matches anywhere in the folded text):

* SQLite: an external-content FTS5 table ``listing_search_fts(doc)`` with the
  ``trigram`` tokenizer (``case_sensitive 1``: ``doc`` is folded already, so a
  match is exactly a substring) over ``listing_search``, kept in sync by triggers
  (so the service only stages ORM rows and everything commits in the listing's
  own transaction). Terms of 3+ characters go through FTS5 ``MATCH`` (each as
  a quoted string, so FTS5 syntax in a query is literal). 1-2 character terms,
  which a trigram index cannot serve, go through two more external-content
  FTS5 tables, ``listing_search_gram(grams)`` and
  ``listing_search_gram_tt(gram_tt)``, whose tokens are the grams: every
  distinct 1- and 2-character substring of a word (the ``ascii`` tokenizer with
  every ASCII punctuation mark a token character, so a gram is exactly one
  token). A 1-2 character term occurs in the text exactly when it is one of its
  grams (terms never span a word break). The title-and-tags one finds the
  listings with a term there (what relevance ranks first) without reading
  them; ``detail=none`` (no positions or columns: a gram is there or not) keeps
  both small (~18 MB at 100k listings against ~70 MB for the trigrams).
* PostgreSQL: a ``pg_trgm`` GIN index on ``doc`` (``gin_trgm_ops``; trigrams
  of CJK text are hashed, so Chinese works) serving ``doc LIKE '%term%'``
  for 3+ character terms; a GIN index on the gram array
  (``string_to_array(grams, ' ')``) serving ``@>`` for
  1-2 character terms, which pg_trgm cannot narrow. Without ``pg_trgm``
  (extension unavailable) the LIKE runs as a scan.

Facet counts, kept by triggers on ``listing_search`` like the FTS tables, for
the searches whose matches are too many to count row by row:

* ``listing_search_facet(facet, value, listings)``: how many listings carry
  each category, classification, pricing model, custody, computation
  (``true``/``false``) and tag (the facets of the
  whole index, read as they are). SQLite and PostgreSQL (statement-level
  PL/pgSQL triggers with transition tables: a bulk load costs one upsert a value);
* ``listing_search_bitmap(facet, value, chunk, bits)`` (SQLite): the same sets as
  bitmaps of ``listing_search.id``, one row per value and block of
  :data:`CHUNK_IDS` ids; ``bits`` is the block as a hex number of
  :data:`CHUNK_DIGITS` digits (id ``chunk * CHUNK_IDS + o`` is bit ``o`` of
  ``int(bits, 16)``). A facet count over a match set is then a popcount of an
  AND (:mod:`exchange.listings.search.sqlite`). Hex text rather than a blob because
  the triggers flip bits with SQL string functions (one hex digit), which
  SQLite has for text and not for blobs. Size: ~1.1 KB a row, so a value
  common enough to be in every block costs ~25 rows at 100k listings (the
  bench corpus: ~1,600 rows, ~2 MB), but a value on a single listing costs a
  whole row too: a corpus of one-off tags pays ~1 KB per (listing, one-off tag),
  at most 32 a listing. (Not done: member lists instead of bitmaps for values
  with few listings.)

``price_fen`` (what price filters and price sorts use), integer fen:
free → 0, fixed → ``price``, subscription → ``price_per_period`` (one
period), tiers → the price of the first 1,000 rows.

Only published listings have a row: :func:`sync` (called by the listing
service when a change is staged) adds, updates or removes it.
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    Text,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex
from sqlmodel import Field, Session, SQLModel, col

from exchange.listings.models import Listing, ListingState
from exchange.pricing import FreePricing, TieredPricing, parse_pricing, price

__all__ = [
    "CHUNK_DIGITS",
    "CHUNK_IDS",
    "CHUNK_SHIFT",
    "FACETS",
    "ListingSearch",
    "ListingSearchTag",
    "create_search_tables",
    "fold",
    "grams",
    "index_values",
    "is_word_break",
    "price_fen",
    "rebuild_facet_index",
    "sync",
]

_id_type = BigInteger().with_variant(Integer, "sqlite")
_title_key_type = Text().with_variant(Text(collation="C"), "postgresql")
_tags_type = JSON().with_variant(JSONB(), "postgresql")


class ListingSearch(SQLModel, table=True):
    """One published listing, as search sees it."""

    __tablename__ = "listing_search"
    __table_args__ = (
        # covers the facet counts' GROUP BY
        Index(
            "ix_listing_search_facets",
            "category",
            "classification",
            "pricing_model",
            "custody",
            "computation",
        ),
        # a filter followed by a sort (or a range), so a page stops after `limit` rows
        # and a filter-only count or candidate scan stays inside one index
        Index("ix_listing_search_category_price", "category", "price_fen"),
        Index("ix_listing_search_category_published", "category", "published_at"),
        Index("ix_listing_search_category_model", "category", "pricing_model", "published_at"),
        Index("ix_listing_search_model_price", "pricing_model", "price_fen"),
        Index("ix_listing_search_title_key", "title_key"),
        # the price sorts, ties (every free listing is 0) already in listing id order
        Index("ix_listing_search_price_listing", "price_fen", "listing_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column("id", _id_type, primary_key=True, autoincrement=True)
    )
    listing_id: str = Field(max_length=36, unique=True)
    category: str = Field(index=True)
    classification: str | None = Field(default=None, index=True)
    pricing_model: str = Field(max_length=16, index=True)
    price_fen: int = Field(sa_type=BigInteger)
    published_at: int = Field(sa_type=BigInteger, index=True)
    title_key: str = Field(sa_column=Column("title_key", _title_key_type, nullable=False))
    title_fold: str = Field(sa_type=Text)
    tags_fold: str = Field(sa_type=Text)
    desc_fold: str = Field(sa_type=Text)
    doc: str = Field(sa_type=Text)
    tags: list[str] = Field(
        default_factory=list, sa_column=Column("tags", _tags_type, nullable=False)
    )
    grams: str = Field(default="", sa_type=Text)
    gram_tt: str = Field(default="", sa_type=Text)
    # last: where migration 0007 added them
    custody: str = Field(default="provider", max_length=16)
    computation: bool = Field(default=False)


class ListingSearchTag(SQLModel, table=True):
    __tablename__ = "listing_search_tag"
    __table_args__ = (
        # covering: the tag facet joins matched listings to their tags through it
        Index("ix_listing_search_tag_listing_tag", "listing_id", "tag"),
    )

    tag: str = Field(primary_key=True, max_length=50)
    listing_id: str = Field(primary_key=True, max_length=36)


SEARCH_TABLES = ("listing_search", "listing_search_tag")

FACETS = ("category", "classification", "pricing_model", "custody", "computation", "tag")
"""The facet names of ``listing_search_facet`` / ``listing_search_bitmap``."""

CHUNK_SHIFT = 12
CHUNK_IDS = 1 << CHUNK_SHIFT  # listing_search ids per bitmap row
CHUNK_DIGITS = CHUNK_IDS // 4
_HEX = "'0123456789abcdef'"

# ASCII punctuation as token characters of the gram index: with them, the only
# separators of the ascii tokenizer are ASCII whitespace and control characters,
# which never occur inside a gram (they break words), so each gram is one token.
_GRAM_TOKENIZER = "ascii tokenchars '" + string.punctuation.replace("'", "''") + "'"


# The trigger SQL below is built from fixed fragments and the trigger row names
# (``new``/``old``), never from input (hence the S608 exemptions).


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _flag(column: str) -> str:
    """The computation facet's value of a boolean column: ``true`` or ``false``."""
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END"


def _facet_values(row: str) -> str:
    """The (facet, value) pairs of ``row`` (``new`` or ``old`` in a trigger)."""
    return (
        f"SELECT 'category' AS facet, {row}.category AS value "  # noqa: S608
        f"UNION SELECT 'classification', {row}.classification "
        f"WHERE {row}.classification IS NOT NULL "
        f"UNION SELECT 'pricing_model', {row}.pricing_model "
        f"UNION SELECT 'custody', {row}.custody "
        f"UNION SELECT 'computation', {_flag(row + '.computation')} "
        f"UNION SELECT 'tag', value FROM json_each({row}.tags)"
    )


def _flip(row: str, on: bool) -> str:
    """``bits`` with ``row.id``'s bit set (``on``) or cleared: bit ``o & 3`` of
    the hex digit ``o >> 2`` places from the end (``o``: the id in its block)."""
    digit = f"({CHUNK_DIGITS} - (({row}.id & {CHUNK_IDS - 1}) >> 2))"  # 1-based
    old = f"(instr({_HEX}, substr(bits, {digit}, 1)) - 1)"
    new = f"({old} | (1 << ({row}.id & 3)))" if on else f"({old} & ~(1 << ({row}.id & 3)))"
    return (
        f"substr(bits, 1, {digit} - 1) || substr({_HEX}, {new} + 1, 1) || substr(bits, {digit} + 1)"
    )


def _bitmap_rows(row: str) -> str:
    return (
        f"SELECT b.rowid FROM ({_facet_values(row)}) AS v JOIN listing_search_bitmap AS b "  # noqa: S608
        f"ON b.facet = v.facet AND b.value = v.value AND b.chunk = {row}.id >> {CHUNK_SHIFT}"
    )


def _facet_rows(row: str) -> str:
    return (
        f"SELECT f.rowid FROM ({_facet_values(row)}) AS v JOIN listing_search_facet AS f "  # noqa: S608
        "ON f.facet = v.facet AND f.value = v.value"
    )


def _facets_add(row: str) -> str:
    return (
        "INSERT INTO listing_search_facet (facet, value, listings) "  # noqa: S608
        f"SELECT facet, value, 1 FROM ({_facet_values(row)}) WHERE true "
        "ON CONFLICT (facet, value) DO UPDATE SET listings = listings + 1; "
        "INSERT OR IGNORE INTO listing_search_bitmap (facet, value, chunk, bits) "
        f"SELECT facet, value, {row}.id >> {CHUNK_SHIFT}, printf('%.*c', {CHUNK_DIGITS}, '0') "
        f"FROM ({_facet_values(row)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(row, True)} "
        f"WHERE rowid IN ({_bitmap_rows(row)}); "
    )


def _facets_remove(row: str) -> str:
    return (
        "UPDATE listing_search_facet SET listings = listings - 1 "  # noqa: S608
        f"WHERE rowid IN ({_facet_rows(row)}); "
        f"DELETE FROM listing_search_facet WHERE listings <= 0 AND rowid IN ({_facet_rows(row)}); "
        f"UPDATE listing_search_bitmap SET bits = {_flip(row, False)} "
        f"WHERE rowid IN ({_bitmap_rows(row)}); "
        f"DELETE FROM listing_search_bitmap WHERE bits = printf('%.*c', {CHUNK_DIGITS}, '0') "
        f"AND rowid IN ({_bitmap_rows(row)}); "
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


def _grams_add(row: str) -> str:
    return (
        f"INSERT INTO listing_search_gram(rowid, grams) VALUES ({row}.id, {row}.grams); "  # noqa: S608
        f"INSERT INTO listing_search_gram_tt(rowid, gram_tt) VALUES ({row}.id, {row}.gram_tt); "
    )


def _grams_remove(row: str) -> str:
    return (
        "INSERT INTO listing_search_gram(listing_search_gram, rowid, grams) "  # noqa: S608
        f"VALUES ('delete', {row}.id, {row}.grams); "
        "INSERT INTO listing_search_gram_tt(listing_search_gram_tt, rowid, gram_tt) "
        f"VALUES ('delete', {row}.id, {row}.gram_tt); "
    )


_SQLITE_DDL = (
    # full text: trigrams of the folded text (3+ character terms); case-sensitive, so
    # the tokenizer folds nothing more and a MATCH is exactly a substring of `doc`
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_fts USING fts5("
    "doc, content='listing_search', content_rowid='id', tokenize='trigram case_sensitive 1')",
    "CREATE TRIGGER IF NOT EXISTS listing_search_ai AFTER INSERT ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(rowid, doc) VALUES (new.id, new.doc); END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_ad AFTER DELETE ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(listing_search_fts, rowid, doc) "
    "VALUES ('delete', old.id, old.doc); END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_au AFTER UPDATE OF doc ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(listing_search_fts, rowid, doc) "
    "VALUES ('delete', old.id, old.doc); "
    "INSERT INTO listing_search_fts(rowid, doc) VALUES (new.id, new.doc); END",
    # full text: the grams (1-2 character terms), of everything and of title and tags
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_gram USING fts5("
    "grams, content='listing_search', content_rowid='id', "
    f"tokenize={_sql_string(_GRAM_TOKENIZER)}, detail='none')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_gram_tt USING fts5("
    "gram_tt, content='listing_search', content_rowid='id', "
    f"tokenize={_sql_string(_GRAM_TOKENIZER)}, detail='none')",
    "CREATE TRIGGER IF NOT EXISTS listing_search_gram_ai AFTER INSERT ON listing_search BEGIN "
    f"{_grams_add('new')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_gram_ad AFTER DELETE ON listing_search BEGIN "
    f"{_grams_remove('old')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_gram_au "
    "AFTER UPDATE OF grams, gram_tt ON listing_search BEGIN "
    f"{_grams_remove('old')}{_grams_add('new')}END",
    # facet counts and bitmaps
    _FACET_TABLE,
    _FACET_RANK,
    "CREATE TABLE IF NOT EXISTS listing_search_bitmap ("
    "facet TEXT NOT NULL, value TEXT NOT NULL, chunk INTEGER NOT NULL, bits TEXT NOT NULL, "
    "PRIMARY KEY (facet, value, chunk))",
    "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ai AFTER INSERT ON listing_search BEGIN "
    f"{_facets_add('new')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_facet_ad AFTER DELETE ON listing_search BEGIN "
    f"{_facets_remove('old')}END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_facet_au "
    "AFTER UPDATE OF id, category, classification, pricing_model, custody, computation, tags "
    "ON listing_search BEGIN "
    f"{_facets_remove('old')}{_facets_add('new')}END",
)

# GIN indexes with a small pending list: new entries wait there (unsorted) until
# (auto)vacuum merges them, and every search scans it whole. After a bulk load of
# 10k listings a 2-character search took 68 ms with the default 4 MB, 11 ms with
# 256 kB, which loads as fast (fastupdate off: also 11 ms, loads 1.8x slower).
_GIN_OPTIONS = "WITH (gin_pending_list_limit = 256)"
_POSTGRES_GRAM_INDEX = (
    "CREATE INDEX IF NOT EXISTS listing_search_gram_gin ON listing_search "
    f"USING gin (string_to_array(grams, ' ')) {_GIN_OPTIONS}"
)


def _postgres_changes(rows: str, delta: int) -> str:
    return (
        f"SELECT 'category' AS facet, category AS value, {delta} AS delta FROM {rows} "  # noqa: S608
        f"UNION ALL SELECT 'classification', classification, {delta} FROM {rows} "
        "WHERE classification IS NOT NULL "
        f"UNION ALL SELECT 'pricing_model', pricing_model, {delta} FROM {rows} "
        f"UNION ALL SELECT 'custody', custody, {delta} FROM {rows} "
        f"UNION ALL SELECT 'computation', {_flag('computation')}, {delta} FROM {rows} "
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


# PostgreSQL keeps the facet counts too (not the bitmaps: its plan counts the
# matches' facets in one hash aggregate): statement-level triggers with transition
# tables, so a bulk load costs one upsert per value, not per row. Values are
# upserted in (facet, value) order: two transactions cannot deadlock on them.
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
    "UNION ALL SELECT 'custody', custody, count(*) FROM listing_search GROUP BY custody "
    "UNION ALL SELECT 'computation', CASE WHEN computation THEN 'true' ELSE 'false' END, "
    "count(*) FROM listing_search GROUP BY computation "
    "UNION ALL SELECT 'tag', t, count(DISTINCT id) FROM listing_search, "
    "jsonb_array_elements_text(tags) AS t GROUP BY t"
)


def fold(value: str) -> str:
    """The normal form both the index and queries use: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", value).casefold()


def is_word_break(ch: str) -> bool:
    """Characters that separate query terms (and the words grams are taken from)."""
    return ch.isspace() or ord(ch) < 32 or ch == "\x7f"


def _words(folded: str) -> list[str]:
    return "".join(" " if is_word_break(ch) else ch for ch in folded).split()


def grams(*texts: str) -> str:
    """The distinct 1- and 2-character substrings of the words of ``texts``
    (already folded), sorted, space separated: the tokens of the gram index."""
    found: set[str] = set()
    for value in texts:
        for word in _words(value):
            found.update(word)
            found.update(word[i : i + 2] for i in range(len(word) - 1))
    return " ".join(sorted(found))


def price_fen(pricing: dict[str, Any]) -> int:
    """The one comparable price of a listing (see the module docstring)."""
    parsed = parse_pricing(pricing)
    if isinstance(parsed, FreePricing):
        return 0
    if isinstance(parsed, TieredPricing):
        return price(parsed, rows=1000, periods=None)
    if parsed.model == "subscription":
        return int(pricing["price_per_period"])
    return price(parsed, rows=None, periods=None)


def index_values(row: Listing) -> dict[str, Any]:
    """The ``listing_search`` columns of a published listing (also for bulk loads)."""
    title = fold(row.title)
    tags = fold(" ".join(row.tags))
    description = fold(row.description)
    return {
        "listing_id": row.id,
        "category": row.category,
        "classification": row.classification,
        "pricing_model": str(row.pricing.get("model", "")),
        "custody": row.custody,
        "computation": row.computation is not None,
        "price_fen": price_fen(row.pricing),
        "published_at": row.published_at or row.updated_at,
        "title_key": title,
        "title_fold": title,
        "tags_fold": tags,
        "desc_fold": description,
        "doc": f"{title}\n{tags}\n{description}",
        "tags": list(dict.fromkeys(row.tags)),
        "grams": grams(title, tags, description),
        "gram_tt": grams(title, tags),
    }


def sync(session: Session, row: Listing) -> None:
    """Stage (without flushing) the index change for ``row``'s new state: a
    published listing gets its row and tags (re)written, any other state has
    them removed. Call inside the change's staging, so it commits with it."""
    current = session.execute(
        select(ListingSearch).where(col(ListingSearch.listing_id) == row.id)
    ).scalar_one_or_none()
    old_tags = session.execute(
        select(ListingSearchTag).where(col(ListingSearchTag.listing_id) == row.id)
    ).scalars()
    for tag_row in old_tags:
        session.delete(tag_row)
    if row.state != ListingState.PUBLISHED:
        if current is not None:
            session.delete(current)
        return
    values = index_values(row)
    if current is None:
        session.add(ListingSearch(**values))
    else:
        for name, value in values.items():
            setattr(current, name, value)
    for tag in dict.fromkeys(row.tags):
        session.add(ListingSearchTag(tag=tag, listing_id=row.id))


def create_search_tables(engine: Engine) -> None:
    """Create the index tables (and SQLite's FTS5 tables, facet tables and
    triggers, PostgreSQL's trigram and gram indexes) if missing, then index
    published listings that lack a row (a database from before the index existed)."""
    tables = [SQLModel.metadata.tables[name] for name in SEARCH_TABLES]
    SQLModel.metadata.create_all(engine, tables=tables)
    with engine.begin() as connection:  # create_all skips those of existing tables
        for table in tables:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                connection.execute(CreateIndex(index, if_not_exists=True))
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            for statement in _SQLITE_DDL:
                connection.execute(text(statement))
    elif engine.dialect.name == "postgresql":
        _postgres_text_indexes(engine)
    _backfill(engine)


def _postgres_text_indexes(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(_POSTGRES_GRAM_INDEX))
        created = not connection.execute(
            text("SELECT to_regclass('listing_search_facet') IS NOT NULL")
        ).scalar_one()
        connection.exec_driver_sql(_FACET_TABLE)
        connection.exec_driver_sql(_FACET_RANK)
        if connection.execute(
            text("SELECT to_regprocedure('listing_search_facet_count()') IS NULL")
        ).scalar_one():
            connection.exec_driver_sql(_POSTGRES_FACET_FUNCTION)
        present = set(
            connection.execute(
                text(
                    "SELECT tgname FROM pg_trigger "
                    "WHERE tgrelid = to_regclass('listing_search') AND NOT tgisinternal"
                )
            ).scalars()
        )
        for trigger in _POSTGRES_FACET_TRIGGERS:
            if trigger.split()[2] not in present:
                connection.exec_driver_sql(trigger)
        if created:
            connection.exec_driver_sql(_POSTGRES_FACET_FILL)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError:
        pass  # not allowed here: it may still exist; else LIKE scans
    with engine.begin() as connection:
        schema = connection.execute(
            text(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
            )
        ).scalar_one_or_none()
        if schema is None:
            return
        quoted = '"' + schema.replace('"', '""') + '"'
        connection.execute(
            text(
                "CREATE INDEX IF NOT EXISTS listing_search_doc_trgm "
                f"ON listing_search USING gin (doc {quoted}.gin_trgm_ops) {_GIN_OPTIONS}"
            )
        )


def _backfill(engine: Engine) -> None:
    with Session(engine) as session:
        indexed = select(col(ListingSearch.listing_id))
        missing = session.execute(
            select(Listing)
            .where(col(Listing.state) == ListingState.PUBLISHED.value)
            .where(col(Listing.id).not_in(indexed))
        ).scalars()
        changed = False
        for row in missing:
            sync(session, row)
            changed = True
        if changed:
            session.commit()


def facet_pairs(
    category: str,
    classification: str | None,
    pricing_model: str,
    custody: str,
    computation: bool,
    tags: Iterable[str],
) -> set[tuple[str, str]]:
    """The (facet, value) pairs of one listing, as the triggers count them."""
    pairs = {
        ("category", category),
        ("pricing_model", pricing_model),
        ("custody", custody),
        ("computation", "true" if computation else "false"),
    }
    if classification is not None:
        pairs.add(("classification", classification))
    pairs.update(("tag", tag) for tag in tags)
    return pairs


def rebuild_facet_index(connection: Connection) -> None:
    """Recompute SQLite's ``listing_search_facet`` and ``listing_search_bitmap``
    from ``listing_search`` (for rows written before their triggers existed)."""
    counts: dict[tuple[str, str], int] = {}
    bitmaps: dict[tuple[str, str, int], int] = {}
    rows = connection.execute(
        text(
            "SELECT id, category, classification, pricing_model, custody, computation, tags "
            "FROM listing_search"
        )
    )
    for listing, category, classification, pricing_model, custody, computation, tags in rows:
        chunk, bit = listing >> CHUNK_SHIFT, 1 << (listing & (CHUNK_IDS - 1))
        pairs = facet_pairs(
            category, classification, pricing_model, custody, bool(computation), json.loads(tags)
        )
        for facet, value in pairs:
            counts[facet, value] = counts.get((facet, value), 0) + 1
            bitmaps[facet, value, chunk] = bitmaps.get((facet, value, chunk), 0) | bit
    connection.execute(text("DELETE FROM listing_search_facet"))
    connection.execute(text("DELETE FROM listing_search_bitmap"))
    if counts:
        connection.execute(
            text("INSERT INTO listing_search_facet (facet, value, listings) VALUES (:f, :v, :n)"),
            [{"f": f, "v": v, "n": n} for (f, v), n in counts.items()],
        )
        connection.execute(
            text(
                "INSERT INTO listing_search_bitmap (facet, value, chunk, bits) "
                "VALUES (:f, :v, :c, :b)"
            ),
            [
                {"f": f, "v": v, "c": c, "b": format(b, f"0{CHUNK_DIGITS}x")}
                for (f, v, c), b in bitmaps.items()
            ],
        )
