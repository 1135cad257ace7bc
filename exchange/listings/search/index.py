"""The search index of PUBLISHED listings: one denormalised row per listing.

Tables (made by the Alembic migrations in :mod:`exchange.migrations`, which also
hold the raw SQL of what follows: FTS5 tables, triggers, facet tables,
PostgreSQL's text indexes):

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
declared on the models.

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
import unicodedata
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    Text,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, Session, SQLModel, col

from exchange.listings.models import Listing, ListingState
from exchange.listings.quality import QualityReportRow, SignerRole, current_report
from exchange.pricing import FreePricing, TieredPricing, parse_pricing, price
from ledger.protocol.quality import current_report as newest

__all__ = [
    "CHUNK_DIGITS",
    "CHUNK_IDS",
    "CHUNK_SHIFT",
    "FACETS",
    "ListingSearch",
    "ListingSearchTag",
    "fold",
    "grams",
    "index_values",
    "is_word_break",
    "price_fen",
    "price_unit",
    "rebuild_facet_index",
    "set_current_grade",
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
            "grade",
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
    # last: where migration 0011 added it
    grade: str | None = Field(default=None, max_length=1)
    """The quality grade of the current version's newest provider report (docs/quality.md)."""


class ListingSearchTag(SQLModel, table=True):
    __tablename__ = "listing_search_tag"
    __table_args__ = (
        # covering: the tag facet joins matched listings to their tags through it
        Index("ix_listing_search_tag_listing_tag", "listing_id", "tag"),
    )

    tag: str = Field(primary_key=True, max_length=50)
    listing_id: str = Field(primary_key=True, max_length=36)


FACETS = (
    "category",
    "classification",
    "pricing_model",
    "custody",
    "computation",
    "grade",
    "tag",
)
"""The facet names of ``listing_search_facet`` / ``listing_search_bitmap``."""

CHUNK_SHIFT = 12
CHUNK_IDS = 1 << CHUNK_SHIFT  # listing_search ids per bitmap row
CHUNK_DIGITS = CHUNK_IDS // 4


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


def price_unit(pricing: dict[str, Any]) -> str:
    """What :func:`price_fen` of the same pricing buys, in words."""
    model = pricing.get("model")
    if model == "free":
        return "free"
    if model == "tiers":
        return "per 1,000 rows"
    if model == "subscription":
        return f"per {pricing.get('period_days')} days"
    return "one-off"


def index_values(row: Listing, grade: str | None = None) -> dict[str, Any]:
    """The ``listing_search`` columns of a published listing (also for bulk loads);
    ``grade``: its current quality grade (:mod:`exchange.listings.quality`)."""
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
        "grade": grade,
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
    report = current_report(session, row.id, row.version)
    values = index_values(row, None if report is None else report.grade)
    if current is None:
        session.add(ListingSearch(**values))
    else:
        for name, value in values.items():
            setattr(current, name, value)
    for tag in dict.fromkeys(row.tags):
        session.add(ListingSearchTag(tag=tag, listing_id=row.id))


class _Graded(NamedTuple):
    grade: str
    reported_at: int
    leaf_hash: str


def set_current_grade(
    connection: Connection, listing_id: str, version: int, new: QualityReportRow
) -> None:
    """Index the grade of the current report on ``version`` of a published listing,
    if it is still its current version, on ``connection`` inside the transaction that
    stores the provider's report ``new`` (not written yet): the newest of the
    version's stored provider reports and ``new`` (ledger's rule)."""
    stored = connection.execute(
        select(
            col(QualityReportRow.grade),
            col(QualityReportRow.reported_at),
            col(QualityReportRow.leaf_hash),
        ).where(
            col(QualityReportRow.listing_id) == listing_id,
            col(QualityReportRow.version) == version,
            col(QualityReportRow.signer_role) == SignerRole.PROVIDER.value,
        )
    ).all()
    reports = [_Graded(*row) for row in stored]
    shown = newest([*reports, _Graded(new.grade, new.reported_at, new.leaf_hash)])
    assert shown is not None  # (new is among them)
    current = select(col(Listing.id)).where(
        col(Listing.id) == listing_id, col(Listing.version) == version
    )
    connection.execute(
        update(ListingSearch)
        .where(col(ListingSearch.listing_id) == listing_id, current.exists())
        .values(grade=shown.grade)
    )


def facet_pairs(
    category: str,
    classification: str | None,
    pricing_model: str,
    custody: str,
    computation: bool,
    tags: Iterable[str],
    grade: str | None = None,
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
    if grade is not None:
        pairs.add(("grade", grade))
    pairs.update(("tag", tag) for tag in tags)
    return pairs


def rebuild_facet_index(connection: Connection) -> None:
    """Recompute SQLite's ``listing_search_facet`` and ``listing_search_bitmap``
    from ``listing_search`` (for rows written before their triggers existed)."""
    counts: dict[tuple[str, str], int] = {}
    bitmaps: dict[tuple[str, str, int], int] = {}
    rows = connection.execute(
        text(
            "SELECT id, category, classification, pricing_model, custody, computation, tags, "
            "grade FROM listing_search"
        )
    )
    for listing, category, classification, model, custody, computation, tags, grade in rows:
        chunk, bit = listing >> CHUNK_SHIFT, 1 << (listing & (CHUNK_IDS - 1))
        pairs = facet_pairs(
            category, classification, model, custody, bool(computation), json.loads(tags), grade
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
