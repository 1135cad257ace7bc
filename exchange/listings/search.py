"""Listing search: full text, filters, sort, cursor pagination and facets over
the index of published listings (:mod:`exchange.listings.search_index`).

* ``q``: up to :data:`MAX_TERMS` whitespace-separated terms, each NFKC
  case-folded; every term must occur (as a substring, so Chinese needs no
  spaces) in the title, tags or description. Query syntax is never
  interpreted: quotes, ``*``, ``NEAR``, ``-``, parentheses are literal text.
* filters: ``category``, ``classification``, ``pricing_model``,
  ``min_price``/``max_price`` (fen, inclusive, on ``price_fen``; see
  :func:`~exchange.listings.search_index.price_fen`), ``provider`` (a key id
  among the listing's providers), ``tag`` (repeatable: all of them).
* ``sort``: ``relevance`` (default with ``q``; needs ``q``), ``newest``
  (default without), ``price_asc``, ``price_desc``, ``title``. Every sort ends
  with the listing id, so the order is total. Relevance is a per-listing
  integer, Σ over terms of 4·(in title) + 2·(in tags) + 1·(in description),
  then newest first: it depends only on the listing itself, so it does not
  shift when other listings are added.
* pagination: keyset. ``next_cursor`` is opaque (base64url JSON of the sort,
  a fingerprint of the query and the last item's sort key); pages neither
  repeat nor skip items when listings are added or removed meanwhile. A
  cursor from another query or sort is refused (400 ``invalid_cursor``).
* facets: counts of category, classification, pricing model and the top
  tags over every listing matching the query and filters (not only the page).
  Always exact (never sampled, estimated or capped), whichever plan counts them.

How it runs. The results do not depend on it: :data:`PLAIN` runs the plain
plan (one query for the page, grouped queries for the facets, ``instr`` for the
text), and tests/exchange/test_search_plans.py checks every other choice
against it, page by page.

* Text, SQLite: 3+ character terms through the trigram FTS5 index, 1-2
  character terms through the gram index (both exact: no re-check of the rows),
  unless the other filters leave at most :data:`INSTR_CANDIDATES` rows: then
  ``instr`` alone on those rows. PostgreSQL: ``LIKE`` (trigram GIN) for 3+
  characters; gram-array containment (GIN) for 1-2, or ``strpos`` when the
  gram index's statistics say the term is in at least :data:`COMMON_GRAM` of
  the listings (a scan either way, and ``strpos`` is the cheaper check).
* No text and no filter (the whole index), both backends: the page through the
  sort's index; total and facets read from the counts the triggers keep.
* SQLite, otherwise: the ids of the matches go into a per-connection
  TEMPORARY table first (nothing else: no row of ``listing_search`` is read when
  the text alone decides), so the total is the rows written (when bounded
  counts show the filters leave too few rows for the plans below, the rows are
  copied whole at once instead). Then, by size:

  - page: when the matches are dense (at least 1/:data:`WALK_DENSITY` of the
    index and :data:`WALK_MATCHES`), walk the sort's index and keep the
    matches, stopping after the page. Relevance: only listings with a term in
    their title or tags (candidates from the title-and-tags gram index, scored
    exactly) score above the number of terms; every other match scores exactly
    that, so the page is those first, then the rest newest first. Otherwise
    (sparse matches) score and sort all of them in a second table.
  - facets: from :data:`BITMAP_MATCHES` matches on, a popcount of the
    matches' bitmap AND each value's bitmap (``listing_search_bitmap``), values
    taken by descending overall count and stopping once none left can reach
    the top; below, grouped queries over the copied rows (the tags through the
    covering ``(listing_id, tag)`` index).
* PostgreSQL with text: one statement. The matches once (a MATERIALIZED CTE:
  the text is checked once, not once per query), then the page, the total,
  the facet columns' counts and the top tags (from the per-listing ``tags``
  array) from them, as JSON; JIT off for it. Filters alone (and SQLite's
  filter-only searches without facets): one query for the page (through an
  index when one fits), grouped ones for the total and facets.
* Provider and tag filters are ``listing_id IN (...)``; on SQLite, when
  bounded counts show the column filters are the narrower, that IN only
  checks rows instead of driving the query.
* SQLite connections get ``mmap_size`` and ``temp_store=MEMORY`` once (see
  :data:`MMAP_BYTES`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    case,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.schema import CreateTable
from sqlmodel import Session, SQLModel, col

from exchange.errors import ExchangeError
from exchange.listings.models import Listing, ListingProvider
from exchange.listings.search_index import (
    CHUNK_IDS,
    CHUNK_SHIFT,
    ListingSearch,
    ListingSearchTag,
    fold,
    is_word_break,
)
from ledger.sm3 import sm3

__all__ = [
    "FacetCount",
    "Facets",
    "SearchHit",
    "SearchPage",
    "SearchParams",
    "search",
]

MAX_TERMS = 8
MAX_TAGS = 10
TRIGRAM = 3
SUMMARY_CHARS = 300

Sort = Literal["relevance", "newest", "price_asc", "price_desc", "title"]
PricingModel = Literal["free", "fixed", "tiers", "subscription"]
SearchClassification = Literal["一般", "重要"]


class InvalidQueryError(ExchangeError):
    status = 422
    code = "invalid_query"


class InvalidCursorError(ExchangeError):
    status = 400
    code = "invalid_cursor"


@dataclass(frozen=True)
class SearchParams:
    q: str | None = None
    category: str | None = None
    classification: str | None = None
    pricing_model: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    provider: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    sort: Sort | None = None
    cursor: str | None = None
    limit: int = 20
    facets: bool = True
    facet_limit: int = 10


class FacetCount(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    category: list[FacetCount]
    classification: list[FacetCount]
    pricing_model: list[FacetCount]
    tags: list[FacetCount]


class SearchHit(BaseModel):
    id: str
    title: str
    summary: str = Field(description=f"The description's first {SUMMARY_CHARS} characters.")
    category: str
    tags: list[str]
    classification: str | None
    owner: str
    providers: list[str] = Field(description="Key ids of the listing's providers.")
    pricing: dict[str, Any]
    price_fen: int = Field(
        description="The comparable price in fen: free 0, fixed price, subscription "
        "price_per_period, tiers the price of the first 1,000 rows."
    )
    format: str
    row_count: int
    byte_size: int
    version: int
    update_frequency: str
    published_at: int
    score: int | None = Field(description="Relevance (with q): Σ 4·title + 2·tags + 1·description.")


class SearchPage(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
    total: int = Field(description="How many listings match the query and filters.")
    facets: Facets | None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "items": [
                        {
                            "id": "0b7c6f0e-2f61-4a8e-9d4e-6b1f0a6a2c11",
                            "title": "重庆交通流量数据",
                            "summary": "Hourly vehicle counts at 120 junctions.",
                            "category": "transport",
                            "tags": ["traffic", "chongqing"],
                            "classification": "一般",
                            "owner": "9f" * 32,
                            "providers": ["9f" * 32],
                            "pricing": {"model": "fixed", "price": 19900},
                            "price_fen": 19900,
                            "format": "csv",
                            "row_count": 1000000,
                            "byte_size": 52000000,
                            "version": 1,
                            "update_frequency": "daily",
                            "published_at": 1767225600000,
                            "score": 4,
                        }
                    ],
                    "next_cursor": "eyJ2IjoxLCJzIjoicmVsZXZhbmNlIn0",
                    "total": 1,
                    "facets": {
                        "category": [{"value": "transport", "count": 1}],
                        "classification": [{"value": "一般", "count": 1}],
                        "pricing_model": [{"value": "fixed", "count": 1}],
                        "tags": [
                            {"value": "chongqing", "count": 1},
                            {"value": "traffic", "count": 1},
                        ],
                    },
                }
            ]
        }
    }


# --------------------------------------------------------------------------- plan knobs

PLAIN = False
"""True: every search runs the plain plan (the reference the tests compare with)."""

# Below this many rows matching the other filters, the text terms are checked
# with instr on those rows instead of through the FTS5 indexes: a frequent term
# (say "traffic", in half the listings) costs FTS5 ~10 ms at 100k listings,
# instr on a few thousand rows a few ms.
INSTR_CANDIDATES = 5000
# The counts that choose a plan stop here.
CAP = 20_000
# From this many matches on, facets are counted with the bitmaps. Counting row
# by row costs ~2 µs a match (the category group and the tag join, sorted);
# the bitmaps cost a pass over the ids (~0.2 µs each) and one AND per value and
# block of 4,096 listings.
BITMAP_MATCHES = 2000
# The page walks the sort's index when at least this many listings match and
# they are at least 1/WALK_DENSITY of the index: the walk then reads about
# limit × WALK_DENSITY index entries, fewer than scoring and sorting the matches.
WALK_MATCHES = 1000
WALK_DENSITY = 50
# Facet values whose bitmaps are read per round (taken by descending overall count).
BITMAP_BATCH = 32
# PostgreSQL: a 1-2 character term in at least this share of the listings is
# checked on the rows (strpos) instead of through the gram index. Up to about
# half the listings the planner takes the gram index (a bitmap scan, ~40 ms at
# 50% of 100k); past that it scans, splitting every row's grams (~600 ms at
# 100k), where strpos on the same scan costs ~100 ms. Kept below the switch.
COMMON_GRAM = 0.4
# PostgreSQL: work_mem for the search's statement (its matches are kept once).
POSTGRES_WORK_MEM = "32MB"

# Memory-mapped reads for this connection (set once per connection; the engine's
# default is none). The search reads index and row pages at random (a tag per
# matched listing, the rows of candidates); through mmap instead of a read()
# per page that part costs ~30-40% less at 100k listings, with SQLite's default
# 2 MB page cache. Address space only: the pages are the OS's file cache.
# And the temporary tables (below) in memory: in a temp file they spill past
# the page cache at tens of thousands of matches (~2x slower there).
MMAP_BYTES = 1 << 30

_LS = ListingSearch
_LS_TABLE = SQLModel.metadata.tables[ListingSearch.__tablename__]
_ORDER_KEYS: dict[str, list[tuple[str, bool]]] = {
    # (key name, descending); the listing id (ascending) always ends the order
    "relevance": [("score", True), ("published_at", True)],
    "newest": [("published_at", True)],
    "price_asc": [("price_fen", False)],
    "price_desc": [("price_fen", True)],
    "title": [("title_key", False)],
}
_KEY_TYPES = {"score": int, "published_at": int, "price_fen": int, "title_key": str}
_FACET_NAMES = {
    "category": "category",
    "classification": "classification",
    "pricing_model": "pricing_model",
    "tags": "tag",
}

Row = tuple[Any, ...]
"""A page row: (listing_id, score, price_fen, *sort key ending with the listing id)."""


# --------------------------------------------------------------------------- parsing


def _clean(value: str, name: str) -> str:
    if "\x00" in value:
        raise InvalidQueryError(f"{name} must not contain NUL characters")
    return value


def terms_of(q: str | None) -> list[str]:
    """The folded query terms (control characters separate terms)."""
    if q is None:
        return []
    folded = "".join(" " if is_word_break(ch) else ch for ch in fold(q))
    terms = list(dict.fromkeys(folded.split()))
    if len(terms) > MAX_TERMS:
        raise InvalidQueryError(f"at most {MAX_TERMS} query terms")
    return terms


def _fts5_string(term: str) -> str:
    """A term as an FTS5 string literal: nothing in it is query syntax."""
    return '"' + term.replace('"', '""') + '"'


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _bigrams(term: str) -> list[str]:
    return list(dict.fromkeys(term[i : i + 2] for i in range(len(term) - 1))) or [term]


# --------------------------------------------------------------------------- SQL


def _position(dialect: str, column: Any, term: str) -> ColumnElement[int]:
    name = "strpos" if dialect == "postgresql" else "instr"
    return getattr(func, name)(column, literal(term))  # type: ignore[no-any-return]


def _score(dialect: str, terms: list[str]) -> ColumnElement[int]:
    total: ColumnElement[int] = literal(0)
    for term in terms:
        for column, weight in ((_LS.title_fold, 4), (_LS.tags_fold, 2), (_LS.desc_fold, 1)):
            total = total + case((_position(dialect, column, term) > 0, weight), else_=0)
    return total


def _gram_array() -> ColumnElement[Any]:
    """PostgreSQL: the gram array its GIN index is on (the same expression, with a
    literal separator, or the planner cannot use the index)."""
    return func.string_to_array(col(_LS.grams), literal_column("' '"))


def _plain_text(dialect: str, terms: list[str]) -> list[ColumnElement[bool]]:
    """Every term a substring of ``doc``, checked on the row."""
    return [_position(dialect, _LS.doc, t) > 0 for t in terms]


def _postgres_text(session: Session, terms: list[str]) -> list[ColumnElement[bool]]:
    """Every term a substring of ``doc``, in the forms PostgreSQL's indexes serve
    (each exact): ``LIKE`` for 3+ characters (the trigram GIN index narrows, the
    heap re-check decides); gram-array containment for 1-2 characters, unless the
    statistics say the gram is common (:data:`COMMON_GRAM`): then ``strpos`` on
    the rows, as a scan would (splitting every row's grams costs ~6x more)."""
    common = _common_grams(session, terms)
    conditions: list[ColumnElement[bool]] = []
    for term in terms:
        if len(term) >= TRIGRAM:
            conditions.append(col(_LS.doc).like(_like_pattern(term), escape="\\"))
        elif term in common:
            conditions.append(_position("postgresql", _LS.doc, term) > 0)
        else:
            conditions.append(_gram_array().op("@>")(literal([term], ARRAY(Text))))
    return conditions


def _common_grams(session: Session, terms: list[str]) -> set[str]:
    """The 1-2 character terms in at least :data:`COMMON_GRAM` of the listings,
    by the gram index's statistics (its most common elements)."""
    short = [t for t in terms if len(t) < TRIGRAM]
    if not short:
        return set()
    row = session.execute(
        text(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'listing_search_gram_gin'"
        )
    ).first()
    if row is None or row[0] is None:
        return set()
    share = dict(zip(row[0], row[1], strict=False))
    return {t for t in short if share.get(t, 0.0) >= COMMON_GRAM}


def _match_sets(terms: list[str]) -> list[tuple[str, str, str]]:
    """SQLite: the FTS ``MATCH`` queries the text needs, one per index, as (table, bind
    name, query): trigram of the 3+ character terms, gram of the shorter ones.
    Both are exact (the text is folded before it is indexed; the trigram tokenizer
    is case-sensitive, so it folds nothing more; a 1-2 character term occurs
    exactly when it is a gram), so the rows need no re-check."""
    long_terms = [t for t in terms if len(t) >= TRIGRAM]
    short_terms = [t for t in terms if len(t) < TRIGRAM]
    return [
        (table, param, " AND ".join(_fts5_string(t) for t in chosen))
        for table, param, chosen in (
            ("listing_search_fts", "fts_query", long_terms),
            ("listing_search_gram", "gram_query", short_terms),
        )
        if chosen
    ]


def _fts_match(table: str, param: str, match: str) -> Any:
    return text(f"{table} MATCH :{param}").bindparams(**{param: match})


def _filters(
    session: Session, params: SearchParams, dialect: str, terms: list[str]
) -> tuple[list[ColumnElement[bool]], int | None]:
    """The conditions other than the text, and (SQLite, when cheap to know) a
    bound on the rows meeting them, capped at :data:`CAP` + 1.

    The provider and tag filters are ``listing_id IN (listings with it)``. SQLite
    then likes to drive from that list even when the column filters select
    fewer rows (category + pricing model, ~2,000 of 100k, against a tag on
    ~6,000): there, when bounded counts show the column filters are the
    narrower, the IN is written so it can only check rows (``listing_id || ''``).
    The rows matched are the same either way."""
    conditions: list[ColumnElement[bool]] = []
    if params.category is not None:
        conditions.append(col(_LS.category) == _clean(params.category, "category"))
    if params.classification is not None:
        conditions.append(col(_LS.classification) == params.classification)
    if params.pricing_model is not None:
        conditions.append(col(_LS.pricing_model) == params.pricing_model)
    if params.min_price is not None:
        conditions.append(col(_LS.price_fen) >= params.min_price)
    if params.max_price is not None:
        conditions.append(col(_LS.price_fen) <= params.max_price)
    lists: list[Any] = []
    if params.provider is not None:
        lists.append(
            select(col(ListingProvider.listing_id)).where(
                col(ListingProvider.provider_key_id) == params.provider
            )
        )
    for tag in dict.fromkeys(params.tags):
        lists.append(
            select(col(ListingSearchTag.listing_id)).where(
                col(ListingSearchTag.tag) == _clean(tag, "tag")
            )
        )
    bound: int | None = None  # at least as many rows as meet the conditions
    if dialect == "sqlite" and conditions and (lists or terms):
        bound = _capped_count(session, select(col(_LS.id)).where(*conditions))
    key: Any = col(_LS.listing_id)
    if lists and dialect == "sqlite":
        narrowest = min(_capped_count(session, listed) for listed in lists)
        if bound is not None and bound <= narrowest:
            key = key.concat("")
        bound = narrowest if bound is None else min(bound, narrowest)
    conditions.extend(key.in_(listed) for listed in lists)
    return conditions, bound


def _sqlite_connection_setup(session: Session) -> None:
    connection = session.connection().connection
    if not connection.info.get("search_pragmas"):
        session.execute(text(f"PRAGMA mmap_size={MMAP_BYTES}"))
        session.execute(text("PRAGMA temp_store=MEMORY"))
        connection.info["search_pragmas"] = True


def _capped_count(session: Session, query: Any) -> int:
    """``min(count of query's rows, CAP + 1)``: bounded work, through the indexes."""
    bounded = query.limit(CAP + 1).subquery()
    return int(session.execute(select(func.count()).select_from(bounded)).scalar_one())


# --------------------------------------------------------------------------- cursor


def _fingerprint(params: SearchParams, terms: list[str], sort: str) -> str:
    shape = [
        terms,
        params.category,
        params.classification,
        params.pricing_model,
        params.min_price,
        params.max_price,
        params.provider,
        sorted(set(params.tags)),
        sort,
    ]
    return sm3(json.dumps(shape, ensure_ascii=False).encode()).hex()[:16]


def encode_cursor(sort: str, fingerprint: str, key: list[Any]) -> str:
    raw = json.dumps({"v": 1, "s": sort, "f": fingerprint, "k": key}, ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, sort: str, fingerprint: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursorError("the cursor is not one this API issued") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("k"), list):
        raise InvalidCursorError("the cursor is not one this API issued")
    if data.get("s") != sort or data.get("f") != fingerprint:
        raise InvalidCursorError("the cursor belongs to another query, filter or sort")
    names = [name for name, _ in _ORDER_KEYS[sort]] + ["listing_id"]
    key: list[Any] = data["k"]
    if len(key) != len(names):
        raise InvalidCursorError("the cursor is malformed")
    for name, value in zip(names, key, strict=True):
        expected = _KEY_TYPES.get(name, str)
        if type(value) is not expected or (isinstance(value, str) and "\x00" in value):
            raise InvalidCursorError("the cursor is malformed")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise InvalidCursorError("the cursor is malformed")
    return key


def _after(columns: list[tuple[ColumnElement[Any], bool]], key: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``key`` in the order ``columns`` (column, descending).
    Led by the first column's bound (implied by the rest), which an index on it
    can seek to, so a later page does not scan the earlier ones."""
    clauses: list[ColumnElement[bool]] = []
    for i, (column, descending) in enumerate(columns):
        equal = [c == v for (c, _), v in zip(columns[:i], key[:i], strict=True)]
        beyond = column < key[i] if descending else column > key[i]
        clauses.append(and_(*equal, beyond) if equal else beyond)
    if not clauses:
        return false()
    first, descending = columns[0]
    return and_(first <= key[0] if descending else first >= key[0], or_(*clauses))


# --------------------------------------------------------------------------- search


@dataclass
class _Search:
    """One search being run: its parameters and what every plan needs."""

    session: Session
    params: SearchParams
    dialect: str
    terms: list[str]
    sort: str
    fingerprint: str
    cursor_key: list[Any] | None
    filters: list[ColumnElement[bool]]
    bound: int | None

    def order(self, sources: dict[str, Any]) -> list[tuple[Any, bool]]:
        order: list[tuple[Any, bool]] = [
            (sources[name], desc) for name, desc in _ORDER_KEYS[self.sort]
        ]
        order.append((sources["listing_id"], False))
        return order


def search(session: Session, params: SearchParams) -> SearchPage:
    """One page of published listings matching ``params`` (see the module docstring)."""
    dialect = session.get_bind().dialect.name
    terms = terms_of(params.q)
    sort = params.sort or ("relevance" if terms else "newest")
    if sort == "relevance" and not terms:
        raise InvalidQueryError("sort=relevance needs a query (q)")
    if (
        params.min_price is not None
        and params.max_price is not None
        and params.min_price > params.max_price
    ):
        raise InvalidQueryError("min_price is greater than max_price")
    if len(set(params.tags)) > MAX_TAGS:
        raise InvalidQueryError(f"at most {MAX_TAGS} tags")
    if params.provider is not None:
        _clean(params.provider, "provider")
    fingerprint = _fingerprint(params, terms, sort)
    cursor_key = None
    if params.cursor is not None:
        cursor_key = decode_cursor(params.cursor, sort, fingerprint)
    if dialect == "sqlite":
        _sqlite_connection_setup(session)
    filters, bound = _filters(session, params, dialect, terms)
    s = _Search(session, params, dialect, terms, sort, fingerprint, cursor_key, filters, bound)
    if PLAIN or dialect not in ("sqlite", "postgresql"):
        return _search_plain(s)
    if not terms and not filters:
        return _search_everything(s)
    if dialect == "postgresql":
        return _search_postgres(s) if terms else _search_plain(s)
    if not terms and not params.facets:
        return _search_plain(s)
    return _search_matches(s)


def _sources(s: _Search) -> dict[str, Any]:
    return {
        "score": _score(s.dialect, s.terms) if s.terms else literal(None),
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        "title_key": col(_LS.title_key),
        "listing_id": col(_LS.listing_id),
    }


def _page_query(
    s: _Search, sources: dict[str, Any], conditions: list[ColumnElement[bool]], limit: int
) -> Any:
    """The page (``limit`` rows) of the rows meeting ``conditions`` in the search's
    order, after its cursor; rows as :data:`Row`."""
    order = s.order(sources)
    if s.cursor_key is not None:
        conditions = [*conditions, _after(order, s.cursor_key)]
    key_columns = [c.label(f"k{i}") for i, (c, _) in enumerate(order)]
    return (
        select(sources["listing_id"], sources["score"].label("score"), sources["price_fen"])
        .add_columns(*key_columns)
        .where(and_(true(), *conditions))
        .order_by(*(c.desc() if d else c.asc() for c, d in order))
        .limit(limit)
    )


def _result(s: _Search, rows: Sequence[Row], total: int, facets: Facets | None) -> SearchPage:
    more = len(rows) > s.params.limit
    rows = rows[: s.params.limit]
    items = _hits(s.session, [(r[0], r[1], r[2]) for r in rows])
    next_cursor = None
    if more and rows:
        next_cursor = encode_cursor(s.sort, s.fingerprint, list(rows[-1][3:]))
    return SearchPage(items=items, next_cursor=next_cursor, total=total, facets=facets)


def _search_plain(s: _Search) -> SearchPage:
    """One query for the page; the total and facets with grouped queries."""
    conditions = s.filters + _plain_text(s.dialect, s.terms)
    rows = s.session.execute(_page_query(s, _sources(s), conditions, s.params.limit + 1)).all()
    total, facets = _facets(s.session, conditions, s.params, None, None)
    return _result(s, rows, total, facets)


def _search_postgres(s: _Search) -> SearchPage:
    """One statement: the matches once (a MATERIALIZED CTE, so the text is checked
    once, not once per query), then from them the page, the total, the facet
    columns' counts and the top tags (each as JSON). JIT off: the statement's
    estimated cost passes jit_above_cost, and compiling costs more (~20 ms) than
    it saves here; more work_mem, so ~50k matches stay in memory."""
    session = s.session
    session.execute(
        text("SELECT set_config('jit', 'off', true), set_config('work_mem', :mem, true)"),
        {"mem": POSTGRES_WORK_MEM},
    )
    sources = _sources(s)
    matched_columns = {
        "listing_id": col(_LS.listing_id),
        "score": sources["score"],
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        "title_key": col(_LS.title_key) if s.sort == "title" else literal(None, Text),
        "category": col(_LS.category),
        "classification": col(_LS.classification),
        "pricing_model": col(_LS.pricing_model),
        "tags": col(_LS.tags),
    }
    conditions = s.filters + _postgres_text(session, s.terms)
    m = (
        select(*(c.label(name) for name, c in matched_columns.items()))
        .where(and_(true(), *conditions))
        .cte("m")
        .prefix_with("MATERIALIZED")
    )
    page = _page_query(
        s, {name: m.c[name] for name in _SOURCE_NAMES}, [], s.params.limit + 1
    ).subquery("p")
    parts: list[Any] = [
        select(func.coalesce(func.json_agg(literal_column("p")), text("'[]'::json")))
        .select_from(page)
        .scalar_subquery(),
        select(func.count()).select_from(m).scalar_subquery(),
    ]
    if s.params.facets:
        grouped = (
            select(m.c.category, m.c.classification, m.c.pricing_model, func.count().label("n"))
            .group_by(m.c.category, m.c.classification, m.c.pricing_model)
            .subquery("f")
        )
        tag = func.jsonb_array_elements_text(m.c.tags).table_valued("value").alias("t")
        n = func.count().label("n")
        top_tags = (
            select(tag.c.value, n)
            .select_from(m)
            .join(tag, true())
            .group_by(tag.c.value)
            .order_by(n.desc(), tag.c.value)
            .limit(s.params.facet_limit)
            .subquery("g")
        )
        for part in (grouped, top_tags):
            alias: Any = literal_column(part.name)
            parts.append(
                select(func.coalesce(func.json_agg(alias), text("'[]'::json")))
                .select_from(part)
                .scalar_subquery()
            )
    found = session.execute(select(*parts)).one()
    names = [f"k{i}" for i in range(len(_ORDER_KEYS[s.sort]) + 1)]
    rows = [(r["listing_id"], r["score"], r["price_fen"], *(r[k] for k in names)) for r in found[0]]
    total = int(found[1])
    facets = None
    if s.params.facets:
        category: dict[str, int] = {}
        classification: dict[str, int] = {}
        pricing_model: dict[str, int] = {}
        for group in found[2]:
            count = int(group["n"])
            category[group["category"]] = category.get(group["category"], 0) + count
            if group["classification"] is not None:
                value = group["classification"]
                classification[value] = classification.get(value, 0) + count
            model = group["pricing_model"]
            pricing_model[model] = pricing_model.get(model, 0) + count
        limit = s.params.facet_limit
        facets = Facets.model_construct(
            category=_top(category, limit),
            classification=_top(classification, limit),
            pricing_model=_top(pricing_model, limit),
            tags=_top({t["value"]: int(t["n"]) for t in found[3]}, limit),
        )
    return _result(s, rows, total, facets)


_SOURCE_NAMES = ("score", "published_at", "price_fen", "title_key", "listing_id")


def _search_everything(s: _Search) -> SearchPage:
    """No text and no filter: the page through the sort's index, the total and the
    facets from the counts the triggers keep."""
    rows = s.session.execute(_page_query(s, _sources(s), [], s.params.limit + 1)).all()
    total = _indexed(s.session)
    facets = None
    if s.params.facets:
        tops = {
            name: [
                FacetCount.model_construct(value=value, count=int(count))
                for value, count in s.session.execute(
                    text(
                        "SELECT value, listings FROM listing_search_facet WHERE facet = :facet "
                        "ORDER BY listings DESC, value LIMIT :limit"
                    ),
                    {"facet": facet, "limit": s.params.facet_limit},
                ).all()
            ]
            for name, facet in _FACET_NAMES.items()
        }
        facets = _facets_of(tops)
    return _result(s, rows, total, facets)


def _dense(s: _Search, matches: int) -> bool:
    """Enough matches, and dense enough in the index, for pages walked in its order."""
    return matches >= WALK_MATCHES and matches * WALK_DENSITY >= _indexed(s.session)


def _indexed(session: Session) -> int:
    """How many listings the index holds (each has one category)."""
    return int(
        session.execute(
            text("SELECT coalesce(sum(listings), 0) FROM listing_search_facet WHERE facet = :f"),
            {"f": "category"},
        ).scalar_one()
    )


def _search_matches(s: _Search) -> SearchPage:
    """SQLite with text or filters: the page and the facets by the plans the
    number of matches calls for (see the module docstring)."""
    use_fts = s.bound is None or s.bound > INSTR_CANDIDATES
    total: int | None = None
    if s.bound is not None and s.bound < min(WALK_MATCHES, BITMAP_MATCHES):
        # too few matches for any plan but row by row: copy them whole at once
        total = _describe_matches(s, *_matching(s, use_fts)[1:])
    elif s.bound is None:
        # no bound known: copy them whole, up to the size from which other plans
        # take over (a few ms lost then, against a statement saved when few match)
        copied = _describe_matches(s, *_matching(s, use_fts)[1:], limit=BITMAP_MATCHES)
        if copied < BITMAP_MATCHES and not _dense(s, copied):
            total = copied
    walk = bitmaps = False
    if total is None:
        total = _collect_matches(s, use_fts)
        walk = _dense(s, total)
        bitmaps = s.params.facets and total >= BITMAP_MATCHES
        if not walk or (s.params.facets and not bitmaps):
            _describe_matches(s, _LS_TABLE, [col(_LS.id).in_(select(_IDS.c.id))])
    rows: Sequence[Row]
    if walk:
        rows = _walk_page(s)
    else:
        matched = {name: _MATCHED.c[name] for name in ("score", "published_at", "price_fen")}
        sources = {
            **matched,
            "title_key": _MATCHED.c.title_key,
            "listing_id": _MATCHED.c.listing_id,
        }
        rows = s.session.execute(_page_query(s, sources, [], s.params.limit + 1)).all()
    facets: Facets | None = None
    if bitmaps:
        facets = _bitmap_facets(s)
    elif s.params.facets:
        total, facets = _facets(s.session, [], s.params, _MATCHED, total)
    return _result(s, rows, total, facets)


# --------------------------------------------------------------------------- hits


def _hits(session: Session, found: list[tuple[str, int | None, int]]) -> list[SearchHit]:
    if not found:
        return []
    ids = [listing_id for listing_id, _, _ in found]
    # only the columns a hit shows (not the schema or the sample rows), no ORM objects
    shown = [
        col(Listing.id),
        col(Listing.title),
        col(Listing.description),
        col(Listing.category),
        col(Listing.tags),
        col(Listing.classification),
        col(Listing.owner_key_id),
        col(Listing.pricing),
        col(Listing.format),
        col(Listing.row_count),
        col(Listing.byte_size),
        col(Listing.version),
        col(Listing.update_frequency),
        col(Listing.published_at),
        col(Listing.updated_at),
    ]
    listings = {
        row.id: row for row in session.execute(select(*shown).where(col(Listing.id).in_(ids))).all()
    }
    providers: dict[str, list[str]] = {listing_id: [] for listing_id in ids}
    for listing_id, key_id in session.execute(
        select(col(ListingProvider.listing_id), col(ListingProvider.provider_key_id))
        .where(col(ListingProvider.listing_id).in_(ids))
        .order_by(col(ListingProvider.listing_id), col(ListingProvider.position))
    ).all():
        providers[listing_id].append(key_id)
    hits = []
    for listing_id, score, price_fen in found:
        row = listings.get(listing_id)
        if row is None:  # removed between the two reads
            continue
        hits.append(
            SearchHit(
                id=row.id,
                title=row.title,
                summary=row.description[:SUMMARY_CHARS],
                category=row.category,
                tags=row.tags,
                classification=row.classification,
                owner=row.owner_key_id,
                providers=providers[listing_id],
                pricing=row.pricing,
                price_fen=price_fen,
                format=row.format,
                row_count=row.row_count,
                byte_size=row.byte_size,
                version=row.version,
                update_frequency=row.update_frequency,
                published_at=row.published_at or row.updated_at,
                score=score,
            )
        )
    return hits


# --------------------------------------------------------------------------- facets


def _facets_of(tops: dict[str, list[FacetCount]]) -> Facets:
    return Facets.model_construct(
        category=tops["category"],
        classification=tops["classification"],
        pricing_model=tops["pricing_model"],
        tags=tops["tags"],
    )


def _top(counts: dict[str, int], limit: int) -> list[FacetCount]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [FacetCount.model_construct(value=value, count=count) for value, count in ranked[:limit]]


def _facets(
    session: Session,
    conditions: list[ColumnElement[bool]],
    params: SearchParams,
    matched: Table | None,
    total: int | None,
) -> tuple[int, Facets | None]:
    """The total and the facet counts over every match: from the materialised
    match set when there is one (it carries the facet columns), else with the
    conditions (one grouped query for the three columns, one for the tags)."""
    where = and_(true(), *conditions)
    if not params.facets:
        if total is None:
            total = session.execute(select(func.count()).select_from(_LS).where(where)).scalar_one()
        return int(total), None
    cat: Any
    cls: Any
    model: Any
    if matched is not None:
        cat, cls, model = matched.c.category, matched.c.classification, matched.c.pricing_model
        grouped_query = select(cat, cls, model, func.count()).group_by(cat, cls, model)
    else:
        cat, cls, model = col(_LS.category), col(_LS.classification), col(_LS.pricing_model)
        grouped_query = select(cat, cls, model, func.count()).where(where).group_by(cat, cls, model)
    grouped = session.execute(grouped_query).all()
    total = 0
    category: dict[str, int] = {}
    classification: dict[str, int] = {}
    pricing_model: dict[str, int] = {}
    for cat_value, cls_value, model_value, count in grouped:
        total += count
        category[cat_value] = category.get(cat_value, 0) + count
        if cls_value is not None:
            classification[cls_value] = classification.get(cls_value, 0) + count
        pricing_model[model_value] = pricing_model.get(model_value, 0) + count
    tags: dict[str, int] = {}
    if total:
        tag_count = func.count().label("n")
        tag_query = select(col(ListingSearchTag.tag), tag_count)
        if matched is not None:
            # CROSS JOIN: SQLite keeps this order, the matches driving the covering
            # (listing_id, tag) index (it has no statistics on the temp table)
            tag_query = select(literal_column("t.tag"), tag_count).select_from(
                text(
                    "listing_search_matched AS m CROSS JOIN listing_search_tag AS t "
                    "ON t.listing_id = m.listing_id"
                )
            )
            tag_rows = session.execute(
                tag_query.group_by(literal_column("t.tag"))
                .order_by(tag_count.desc(), literal_column("t.tag"))
                .limit(params.facet_limit)
            ).all()
        else:
            if conditions:  # else every tag row counts: no join needed
                # the matching rows drive, each reaching its tags through the covering
                # (listing_id, tag) index. On SQLite `|| ''` keeps the planner from the
                # other order, which probes a listing for every tag row (~1 s at 100k)
                listing_key: Any = col(_LS.listing_id)
                if session.get_bind().dialect.name == "sqlite":
                    listing_key = listing_key.concat("")
                tag_query = tag_query.join(
                    _LS, listing_key == col(ListingSearchTag.listing_id)
                ).where(where)
            tag_rows = session.execute(
                tag_query.group_by(col(ListingSearchTag.tag))
                .order_by(tag_count.desc(), col(ListingSearchTag.tag))
                .limit(params.facet_limit)
            ).all()
        tags = {tag: int(n) for tag, n in tag_rows}
    limit = params.facet_limit
    return total, Facets.model_construct(
        category=_top(category, limit),
        classification=_top(classification, limit),
        pricing_model=_top(pricing_model, limit),
        tags=_top(tags, limit),
    )


# --------------------------------------------------------------------------- match set (SQLite)

# Per connection (TEMPORARY), rows written inside the request's transaction (so
# they go with its rollback; each search empties the tables first anyway):
_IDS = Table(  # the ids of the current search's matches
    "listing_search_match_ids",
    MetaData(),
    Column("id", Integer, primary_key=True),
    prefixes=["TEMPORARY"],
)
_MATCHED = Table(  # when a plan reads them row by row: the matches' columns
    "listing_search_matched",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("listing_id", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("classification", Text),
    Column("pricing_model", Text, nullable=False),
    Column("score", Integer),
    Column("published_at", Integer, nullable=False),
    Column("price_fen", Integer, nullable=False),
    Column("title_key", Text),
    prefixes=["TEMPORARY"],
)
_HIGH = Table(  # the matches that score above the number of terms, as a page reads them
    "listing_search_high",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("listing_id", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("published_at", Integer, nullable=False),
    Column("price_fen", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


def _reset(session: Session, table: Table) -> None:
    """An empty ``table``. (Created if missing each time: when the request's
    transaction rolls back, so does a CREATE made in it. Through the DB-API
    cursor: two constant statements, without SQLAlchemy's per-statement work.)"""
    statements = _RESET.get(table.name)
    if statements is None:
        create = str(
            CreateTable(table, if_not_exists=True).compile(dialect=session.get_bind().dialect)
        )
        statements = _RESET[table.name] = (create, f"DELETE FROM {table.name}")  # noqa: S608
    cursor = session.connection().connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


_RESET: dict[str, tuple[str, str]] = {}


def _collect_matches(s: _Search, use_fts: bool) -> int:
    """Fill the id table with the ids of the matches; how many. When the text
    alone decides, straight from the FTS indexes (no ``listing_search`` row is
    read)."""
    _reset(s.session, _IDS)
    rowids, source, conditions = _matching(s, use_fts)
    query: Any
    if rowids is not None and not s.filters:
        query = select(rowids).where(*conditions)
    else:
        query = select(col(_LS.id)).select_from(source).where(and_(true(), *conditions))
    result = s.session.execute(_IDS.insert().from_select(["id"], query))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _matching(s: _Search, use_fts: bool) -> tuple[Any, Any, list[ColumnElement[bool]]]:
    """(the driving FTS index's rowid column or None, the FROM, the conditions)
    that select the matching ``listing_search`` rows. The first FTS index drives,
    joined by rowid, so a LIMIT stops it early (as ``id IN (MATCH ...)`` SQLite
    would read the whole match first); the others check, ``rowid + 0 IN`` (a bare
    ``rowid IN`` would run that MATCH once per row)."""
    listing_search = _LS_TABLE
    if not use_fts:
        checks = [_position(s.dialect, _LS.doc, t) > 0 for t in s.terms]
        return None, listing_search, s.filters + checks
    sets = _match_sets(s.terms)
    if not sets:
        return None, listing_search, list(s.filters)
    (name, param, match), *others = sets
    driving = sql_table(name, sql_column("rowid"))
    conditions = [_fts_match(name, param, match)]
    for other, other_param, other_match in others:
        found: Any = (
            select(literal_column("rowid"))
            .select_from(text(other))
            .where(_fts_match(other, other_param, other_match))
        )
        conditions.append((driving.c.rowid + 0).in_(found))
    source = driving.join(listing_search, col(_LS.id) == driving.c.rowid)
    return driving.c.rowid, source, conditions + s.filters


def _describe_matches(
    s: _Search, source: Any, where: list[ColumnElement[bool]], limit: int | None = None
) -> int:
    """Copy the listing ids, facet columns, score and sort keys of the rows of
    ``source`` meeting ``where`` (at most ``limit`` of them) into their table
    (the plans that score or count row by row read them there); how many."""
    _reset(s.session, _MATCHED)
    sources = _sources(s)
    values = {
        "id": col(_LS.id),
        "listing_id": col(_LS.listing_id),
        "category": col(_LS.category),
        "classification": col(_LS.classification),
        "pricing_model": col(_LS.pricing_model),
        "score": sources["score"],
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        # only the (long) title key when it is the order
        "title_key": col(_LS.title_key) if s.sort == "title" else literal(None),
    }
    query = select(*values.values()).select_from(source).where(and_(true(), *where)).limit(limit)
    result = s.session.execute(_MATCHED.insert().from_select(list(values), query))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _in(table: Table) -> ColumnElement[bool]:
    """``listing_search.id`` among ``table``'s ids, as a check on the row: ``+ 0``
    keeps SQLite from driving the query from the temporary table."""
    return (col(_LS.id) + 0).in_(select(table.c.id))


def _walk_page(s: _Search) -> list[Row]:
    """The page of dense matches, walking the sort's index (see the module docstring)."""
    limit = s.params.limit + 1
    sources = _sources(s)
    if s.sort != "relevance":
        query = _page_query(s, sources, [_in(_IDS)], limit)
        return [tuple(row) for row in s.session.execute(query).all()]
    k = len(s.terms)
    _collect_high(s, k)
    high = {name: _HIGH.c[name] for name in ("score", "published_at", "price_fen", "listing_id")}
    rows = [tuple(row) for row in s.session.execute(_page_query(s, high, [], limit)).all()]
    if len(rows) >= limit:
        return rows
    # the rest score exactly k: newest first, after the cursor if it is among them
    rest = replace(s, sort="newest", cursor_key=None)
    if s.cursor_key is not None:
        score, published_at, listing_id = s.cursor_key
        if score < k:
            return rows
        if score == k:
            rest.cursor_key = [published_at, listing_id]
    rest_sources = {**sources, "score": literal(k)}
    query = _page_query(rest, rest_sources, [_in(_IDS), ~_in(_HIGH)], limit - len(rows))
    return rows + [(r[0], r[1], r[2], k, *r[3:]) for r in s.session.execute(query).all()]


def _collect_high(s: _Search, k: int) -> None:
    """The matches scoring above ``k`` (the number of terms) into their table: the
    candidates are the listings with every gram of a term in their title or tags
    (exact for 1-2 character terms, a superset for longer ones), scored exactly."""
    _reset(s.session, _HIGH)
    alternatives = []
    for term in s.terms:
        grams = [_fts5_string(g) for g in (_bigrams(term) if len(term) >= TRIGRAM else [term])]
        alternatives.append("(" + " AND ".join(grams) + ")")
    candidates: Any = (
        select(literal_column("rowid"))
        .select_from(text("listing_search_gram_tt"))
        .where(
            text("listing_search_gram_tt MATCH :tt_query").bindparams(
                tt_query=" OR ".join(alternatives)
            )
        )
    )
    values = {
        "id": col(_LS.id),
        "listing_id": col(_LS.listing_id),
        "score": _score(s.dialect, s.terms),
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
    }
    query = select(*values.values()).where(col(_LS.id).in_(candidates), _in(_IDS))
    s.session.execute(_HIGH.insert().from_select(list(values), query))
    # (scored once: a score > k condition in the query would compute it twice)
    s.session.execute(_HIGH.delete().where(_HIGH.c.score <= k))


def _bitmap_facets(s: _Search) -> Facets:
    """Facet counts of the matches with the bitmaps: for each value, taken by
    descending overall count, popcount(matches AND value), per block of ids;
    stop once the values left, counted whole, cannot reach the top."""
    ids = json.loads(
        s.session.execute(
            text("SELECT json_group_array(id) FROM listing_search_match_ids")
        ).scalar_one()
    )
    matches = _bitmap_of(ids)
    limit = s.params.facet_limit
    cursor = s.session.connection().connection.cursor()
    try:
        tops = {
            name: _bitmap_top(s.session, cursor, facet, matches, limit)
            for name, facet in _FACET_NAMES.items()
        }
    finally:
        cursor.close()
    return _facets_of(tops)


_TO_BINARY = bytes.maketrans(b"\x00\x01", b"01")


def _bitmap_of(ids: list[int]) -> dict[int, int]:
    """Block number → the block's bitmap (bit ``id % 4096``), for the blocks with
    ids. (A byte per id, then base 2: ~15x faster than setting bits one by one.)"""
    if not ids:
        return {}
    flags = bytearray(max(ids) + 1)
    for listing in ids:
        flags[listing] = 1
    every = int(flags.translate(_TO_BINARY)[::-1], 2)
    mask = (1 << CHUNK_IDS) - 1
    blocks: dict[int, int] = {}
    for chunk in range((len(flags) >> CHUNK_SHIFT) + 1):
        block = (every >> (chunk << CHUNK_SHIFT)) & mask
        if block:
            blocks[chunk] = block
    return blocks


def _batches(session: Session, facet: str) -> Iterator[list[tuple[str, int]]]:
    """The facet's values with their overall counts, most frequent first, in batches."""
    offset = 0
    while True:
        batch = [
            (value, int(listings))
            for value, listings in session.execute(
                text(
                    "SELECT value, listings FROM listing_search_facet WHERE facet = :facet "
                    "ORDER BY listings DESC, value LIMIT :n OFFSET :offset"
                ),
                {"facet": facet, "n": BITMAP_BATCH, "offset": offset},
            ).all()
        ]
        if not batch:
            return
        yield batch
        offset += len(batch)


def _bitmap_top(
    session: Session, cursor: Any, facet: str, matches: dict[int, int], limit: int
) -> list[FacetCount]:
    """The top ``limit`` values of ``facet`` over the matches (bitmap blocks)."""
    counts: dict[str, int] = {}
    for batch in _batches(session, facet):
        ranked = sorted((n, value) for value, n in counts.items() if n)[-limit:]
        if len(ranked) == limit and batch[0][1] < ranked[0][0]:
            break  # no value left has enough listings to reach the top
        values = [value for value, _ in batch]
        cursor.execute(  # the DB-API cursor: a few thousand rows, read as plain tuples
            "SELECT value, chunk, bits FROM listing_search_bitmap WHERE facet = ? AND value IN "  # noqa: S608
            f"({', '.join('?' * len(values))})",
            [facet, *values],
        )
        for value, chunk, bits in cursor.fetchall():
            block = matches.get(chunk)
            if block:
                counts[value] = counts.get(value, 0) + (int(bits, 16) & block).bit_count()
    return _top({value: n for value, n in counts.items() if n}, limit)
