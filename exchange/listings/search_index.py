"""The search index of PUBLISHED listings: one denormalised row per listing.

Tables (created by :func:`create_search_tables` at startup, next to the others):

* ``listing_search``: ``id`` (integer key), ``listing_id`` (unique), the
  filter/sort columns (``category``, ``classification``, ``pricing_model``,
  ``price_fen``, ``published_at``, ``title_key``) and the case-folded text
  (``title_fold``, ``tags_fold``, ``desc_fold`` and ``doc``, their concatenation).
* ``listing_search_tag``: ``(tag, listing_id)``, for the "all of these tags"
  filter and the tag facet (its ``(listing_id, tag)`` index covers the facet).

Indexes for filter + sort (``(category, price_fen)``, ``(category,
published_at)``, ``(category, pricing_model, published_at)``,
``(pricing_model, price_fen)``, ``title_key``) are declared on the models and
created at startup also for tables that already exist.

Full text, both backends with the same *substring* semantics (Chinese has no
spaces, so a query term matches anywhere in the folded text):

* SQLite: an external-content FTS5 table ``listing_search_fts(doc)`` with the
  ``trigram`` tokenizer over ``listing_search``, kept in sync by triggers
  (so the service only stages ORM rows and everything commits in the listing's
  own transaction). Terms of 3+ characters go through FTS5 ``MATCH`` (each as
  a quoted string, so FTS5 syntax in a query is literal); 1-2 character terms,
  which a trigram index cannot serve, are checked with ``instr`` on the rows.
* PostgreSQL: a ``pg_trgm`` GIN index on ``doc`` (``gin_trgm_ops``; trigrams
  of CJK text are hashed, so Chinese works) serving ``doc LIKE '%term%'``.
  Without ``pg_trgm`` (extension unavailable) the same LIKE runs as a scan.

``price_fen`` (what price filters and price sorts use), integer fen:
free → 0, fixed → ``price``, subscription → ``price_per_period`` (one
period), tiers → the price of the first 1,000 rows.

Only published listings have a row: :func:`sync` (called by the listing
service when a change is staged) adds, updates or removes it.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, Text, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex
from sqlmodel import Field, Session, SQLModel, col

from exchange.listings.models import Listing, ListingState
from exchange.pricing import FreePricing, TieredPricing, parse_pricing, price

__all__ = [
    "ListingSearch",
    "ListingSearchTag",
    "create_search_tables",
    "fold",
    "index_values",
    "price_fen",
    "sync",
]

_id_type = BigInteger().with_variant(Integer, "sqlite")
_title_key_type = Text().with_variant(Text(collation="C"), "postgresql")


class ListingSearch(SQLModel, table=True):
    """One published listing, as search sees it."""

    __tablename__ = "listing_search"
    __table_args__ = (
        # covers the facet counts' GROUP BY
        Index("ix_listing_search_facets", "category", "classification", "pricing_model"),
        # a filter followed by a sort (or a range), so a page stops after `limit` rows
        # and a filter-only count or candidate scan stays inside one index
        Index("ix_listing_search_category_price", "category", "price_fen"),
        Index("ix_listing_search_category_published", "category", "published_at"),
        Index("ix_listing_search_category_model", "category", "pricing_model", "published_at"),
        Index("ix_listing_search_model_price", "pricing_model", "price_fen"),
        Index("ix_listing_search_title_key", "title_key"),
    )

    id: int | None = Field(
        default=None, sa_column=Column("id", _id_type, primary_key=True, autoincrement=True)
    )
    listing_id: str = Field(max_length=36, unique=True)
    category: str = Field(index=True)
    classification: str | None = Field(default=None, index=True)
    pricing_model: str = Field(max_length=16, index=True)
    price_fen: int = Field(sa_type=BigInteger, index=True)
    published_at: int = Field(sa_type=BigInteger, index=True)
    title_key: str = Field(sa_column=Column("title_key", _title_key_type, nullable=False))
    title_fold: str = Field(sa_type=Text)
    tags_fold: str = Field(sa_type=Text)
    desc_fold: str = Field(sa_type=Text)
    doc: str = Field(sa_type=Text)


class ListingSearchTag(SQLModel, table=True):
    __tablename__ = "listing_search_tag"
    __table_args__ = (
        # covering: the tag facet joins matched listings to their tags through it
        Index("ix_listing_search_tag_listing_tag", "listing_id", "tag"),
    )

    tag: str = Field(primary_key=True, max_length=50)
    listing_id: str = Field(primary_key=True, max_length=36)


SEARCH_TABLES = ("listing_search", "listing_search_tag")

_SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS listing_search_fts USING fts5("
    "doc, content='listing_search', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS listing_search_ai AFTER INSERT ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(rowid, doc) VALUES (new.id, new.doc); END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_ad AFTER DELETE ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(listing_search_fts, rowid, doc) "
    "VALUES ('delete', old.id, old.doc); END",
    "CREATE TRIGGER IF NOT EXISTS listing_search_au AFTER UPDATE ON listing_search BEGIN "
    "INSERT INTO listing_search_fts(listing_search_fts, rowid, doc) "
    "VALUES ('delete', old.id, old.doc); "
    "INSERT INTO listing_search_fts(rowid, doc) VALUES (new.id, new.doc); END",
)


def fold(value: str) -> str:
    """The normal form both the index and queries use: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", value).casefold()


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
        "price_fen": price_fen(row.pricing),
        "published_at": row.published_at or row.updated_at,
        "title_key": title,
        "title_fold": title,
        "tags_fold": tags,
        "desc_fold": description,
        "doc": f"{title}\n{tags}\n{description}",
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
    """Create the index tables (and SQLite's FTS5 table and triggers, PostgreSQL's
    trigram index) if missing, then index published listings that lack a row
    (a database from before the index existed)."""
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
        _postgres_trigram_index(engine)
    _backfill(engine)


def _postgres_trigram_index(engine: Engine) -> None:
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
                f"ON listing_search USING gin (doc {quoted}.gin_trgm_ops)"
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
