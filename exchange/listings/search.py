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
  Always exact (never sampled or capped).

How it runs (the results do not depend on it; a test checks each choice):

* SQLite, with ``q`` (or with filters whose bounded count is at most
  :data:`CAP`, facets wanted): the match set is computed once, with each
  match's score and sort keys and facet columns, into a per-connection
  TEMPORARY table; the page (keyset on those keys), the total (the rows
  written) and the facets are read from it, the tag facet through the
  covering ``(listing_id, tag)`` index. Text terms go through FTS5 ``MATCH``
  and are re-checked with ``instr``, unless the other filters leave at most
  :data:`INSTR_CANDIDATES` rows: then ``instr`` alone on those rows (a frequent
  term costs FTS5 more than that).
* Otherwise (PostgreSQL; large filter-only sets) one query for the page and
  one or two grouped queries for the facets, on the same conditions.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from sqlalchemy.schema import CreateTable
from sqlmodel import Session, col

from exchange.errors import ExchangeError
from exchange.listings.models import Listing, ListingProvider
from exchange.listings.search_index import ListingSearch, ListingSearchTag, fold
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


_LS = ListingSearch
_ORDER_KEYS: dict[str, list[tuple[str, bool]]] = {
    # (key name, descending); the listing id (ascending) always ends the order
    "relevance": [("score", True), ("published_at", True)],
    "newest": [("published_at", True)],
    "price_asc": [("price_fen", False)],
    "price_desc": [("price_fen", True)],
    "title": [("title_key", False)],
}
_KEY_TYPES = {"score": int, "published_at": int, "price_fen": int, "title_key": str}


# --------------------------------------------------------------------------- parsing


def _clean(value: str, name: str) -> str:
    if "\x00" in value:
        raise InvalidQueryError(f"{name} must not contain NUL characters")
    return value


def terms_of(q: str | None) -> list[str]:
    """The folded query terms (control characters separate terms)."""
    if q is None:
        return []
    folded = "".join(" " if ch.isspace() or ord(ch) < 32 or ch == "\x7f" else ch for ch in fold(q))
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


def _text_match(dialect: str, terms: list[str], use_fts: bool) -> list[ColumnElement[bool]]:
    """Every term a substring of ``doc``. PostgreSQL: ``LIKE`` (the trigram GIN
    index serves it). SQLite: ``instr`` on the row, and with ``use_fts`` also
    the FTS5 trigram ``MATCH`` of the 3+ character terms, which narrows the rows
    first (it never drops a row ``instr`` keeps: the trigram tokenizer folds
    text and query alike, code point by code point)."""
    if not terms:
        return []
    if dialect == "postgresql":
        return [col(_LS.doc).like(_like_pattern(t), escape="\\") for t in terms]
    conditions: list[ColumnElement[bool]] = []
    long_terms = [t for t in terms if len(t) >= TRIGRAM]
    if use_fts and long_terms:
        match = " AND ".join(_fts5_string(t) for t in long_terms)
        fts: Any = (
            select(literal_column("rowid"))
            .select_from(text("listing_search_fts"))
            .where(text("listing_search_fts MATCH :fts_query").bindparams(fts_query=match))
        )
        conditions.append(col(_LS.id).in_(fts))
    conditions.extend(_position(dialect, _LS.doc, t) > 0 for t in terms)
    return conditions


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


# Memory-mapped reads for this connection (set once per connection; the engine's
# default is none). The search reads index and row pages at random (a tag per
# matched listing, the rows of candidates); through mmap instead of a read()
# per page that part costs ~30-40% less at 100k listings, with SQLite's default
# 2 MB page cache. Address space only: the pages are the OS's file cache.
# And the temporary match table (below) in memory: in a temp file it spills
# past the page cache at tens of thousands of matches (~2x slower there).
MMAP_BYTES = 1 << 30


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
    """Rows strictly after ``key`` in the order ``columns`` (column, descending)."""
    clauses: list[ColumnElement[bool]] = []
    for i, (column, descending) in enumerate(columns):
        equal = [c == v for (c, _), v in zip(columns[:i], key[:i], strict=True)]
        beyond = column < key[i] if descending else column > key[i]
        clauses.append(and_(*equal, beyond) if equal else beyond)
    return or_(*clauses) if clauses else false()


# --------------------------------------------------------------------------- search


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
    if dialect == "sqlite":
        _sqlite_connection_setup(session)
    conditions, bound = _filters(session, params, dialect, terms)
    score = _score(dialect, terms) if terms else literal(None)
    sources: dict[str, Any] = {
        "score": score,
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        "title_key": col(_LS.title_key),
        "listing_id": col(_LS.listing_id),
    }
    matched: Table | None = None
    total: int | None = None
    if dialect == "sqlite" and (terms or (params.facets and bound is not None and bound <= CAP)):
        # the match is costly (FTS5, instr over candidate rows, tag lists) and
        # the page, the total and the facets each need it: compute the match set
        # once, with its score and sort keys, into a per-connection temporary
        # table, and read them all from there. (Not for large sets without
        # text: copying them costs more than the indexes save.)
        use_fts = bound is None or bound > INSTR_CANDIDATES
        if sort != "title":  # only copy the (long) title key when it is the order
            sources["title_key"] = literal(None)
        total = _materialize(session, conditions + _text_match(dialect, terms, use_fts), sources)
        matched = _MATCHED
        sources = {name: matched.c[name] for name in sources}
        conditions = []
    else:
        conditions = conditions + _text_match(dialect, terms, use_fts=True)
    order: list[tuple[Any, bool]] = [(sources[name], desc) for name, desc in _ORDER_KEYS[sort]]
    order.append((sources["listing_id"], False))
    fingerprint = _fingerprint(params, terms, sort)
    page_conditions = list(conditions)
    if params.cursor is not None:
        key = decode_cursor(params.cursor, sort, fingerprint)
        page_conditions.append(_after(order, key))
    key_columns = [c.label(f"k{i}") for i, (c, _) in enumerate(order)]
    query = (
        select(
            sources["listing_id"],
            sources["score"].label("score"),
            sources["price_fen"],
            *key_columns,
        )
        .where(and_(true(), *page_conditions))
        .order_by(*(c.desc() if d else c.asc() for c, d in order))
        .limit(params.limit + 1)
    )
    rows = session.execute(query).all()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    items = _hits(session, [(r[0], r[1], r[2]) for r in rows])
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(sort, fingerprint, list(last[3:]))
    total, facets = _facets(session, conditions, params, matched, total)
    return SearchPage(items=items, next_cursor=next_cursor, total=total, facets=facets)


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

# Below this many rows matching the other filters, the text terms are checked
# with instr on those rows instead of through the FTS5 index: a frequent term
# (say "traffic", in half the listings) costs FTS5 ~25 ms at 100k listings,
# instr on a few thousand rows a few ms.
INSTR_CANDIDATES = 5000
# The counts that choose a plan stop here.
CAP = 20_000

# Per connection (TEMPORARY): the ids and facet columns of the current
# search's matches. Rows are written inside the request's transaction, so they
# go with its rollback; the search empties it first anyway.
_MATCHED = Table(
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


def _materialize(
    session: Session, conditions: list[ColumnElement[bool]], sources: dict[str, Any]
) -> int:
    """Fill the temporary match table with the rows meeting ``conditions``
    (``sources``: the score and sort key expressions); how many."""
    session.execute(CreateTable(_MATCHED, if_not_exists=True))
    session.execute(_MATCHED.delete())
    values = {
        "id": col(_LS.id),
        "category": col(_LS.category),
        "classification": col(_LS.classification),
        "pricing_model": col(_LS.pricing_model),
        **sources,
    }
    names = [c.name for c in _MATCHED.c]
    result = session.execute(
        _MATCHED.insert().from_select(
            names,
            select(*(values[name] for name in names)).where(and_(true(), *conditions)),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
