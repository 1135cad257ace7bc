"""The SQLite plans of a search with text or filters, and the bitmap facets.

* Text: 3+ character terms through the trigram FTS5 index, 1-2 character terms
  through the gram index (both exact: no re-check of the rows), unless the other
  filters leave at most :data:`INSTR_CANDIDATES` rows: then ``instr`` alone on
  those rows.
* The ids of the matches go into a per-connection TEMPORARY table first (nothing
  else: no row of ``listing_search`` is read when the text alone decides), so
  the total is the rows written (when bounded counts show the filters leave too
  few rows for the plans below, the rows are copied whole at once instead).
  Then, by size:

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
* Connections get ``mmap_size`` and ``temp_store=MEMORY`` once (see
  :data:`MMAP_BYTES`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    literal,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.schema import CreateTable
from sqlmodel import Session, SQLModel, col

from exchange.listings.search.index import CHUNK_IDS, CHUNK_SHIFT, ListingSearch
from exchange.listings.search.page import (
    FACET_NAMES,
    Row,
    facets_of,
    top,
)
from exchange.listings.search.query import (
    Search,
    grouped_facets,
    indexed,
    page_query,
    result,
    sources_of,
)
from exchange.listings.search.terms import (
    TRIGRAM,
    bigrams,
    fts5_string,
    fts_match,
    match_sets,
    position,
    score,
)
from ledger.protocol.search import FacetCount, Facets, SearchPage

__all__ = [
    "BITMAP_BATCH",
    "BITMAP_MATCHES",
    "INSTR_CANDIDATES",
    "MMAP_BYTES",
    "WALK_DENSITY",
    "WALK_MATCHES",
    "connection_setup",
    "search_matches",
]

# Below this many rows matching the other filters, the text terms are checked
# with instr on those rows instead of through the FTS5 indexes: a frequent term
# (say "traffic", in half the listings) costs FTS5 ~10 ms at 100k listings,
# instr on a few thousand rows a few ms.
INSTR_CANDIDATES = 5000
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


def connection_setup(session: Session) -> None:
    connection = session.connection().connection
    if not connection.info.get("search_pragmas"):
        session.execute(text(f"PRAGMA mmap_size={MMAP_BYTES}"))
        session.execute(text("PRAGMA temp_store=MEMORY"))
        connection.info["search_pragmas"] = True


def search_matches(s: Search) -> SearchPage:
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
        rows = s.session.execute(page_query(s, sources, [], s.params.limit + 1)).all()
    facets: Facets | None = None
    if bitmaps:
        facets = _bitmap_facets(s)
    elif s.params.facets:
        total, facets = grouped_facets(s.session, [], s.params, _MATCHED, total)
    return result(s, rows, total, facets)


def _dense(s: Search, matches: int) -> bool:
    """Enough matches, and dense enough in the index, for pages walked in its order."""
    return matches >= WALK_MATCHES and matches * WALK_DENSITY >= indexed(s.session)


# --------------------------------------------------------------------------- match set

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
    Column("custody", Text, nullable=False),
    Column("computation", Boolean, nullable=False),
    Column("grade", Text),
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


def _collect_matches(s: Search, use_fts: bool) -> int:
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
    outcome = s.session.execute(_IDS.insert().from_select(["id"], query))
    return int(outcome.rowcount)  # type: ignore[attr-defined]


def _matching(s: Search, use_fts: bool) -> tuple[Any, Any, list[ColumnElement[bool]]]:
    """(the driving FTS index's rowid column or None, the FROM, the conditions)
    that select the matching ``listing_search`` rows. The first FTS index drives,
    joined by rowid, so a LIMIT stops it early (as ``id IN (MATCH ...)`` SQLite
    would read the whole match first); the others check, ``rowid + 0 IN`` (a bare
    ``rowid IN`` would run that MATCH once per row)."""
    listing_search = _LS_TABLE
    if not use_fts:
        checks = [position(s.dialect, _LS.doc, t) > 0 for t in s.terms]
        return None, listing_search, s.filters + checks
    sets = match_sets(s.terms)
    if not sets:
        return None, listing_search, list(s.filters)
    (name, param, match), *others = sets
    driving = sql_table(name, sql_column("rowid"))
    conditions = [fts_match(name, param, match)]
    for other, other_param, other_match in others:
        found: Any = (
            select(literal_column("rowid"))
            .select_from(text(other))
            .where(fts_match(other, other_param, other_match))
        )
        conditions.append((driving.c.rowid + 0).in_(found))
    source = driving.join(listing_search, col(_LS.id) == driving.c.rowid)
    return driving.c.rowid, source, conditions + s.filters


def _describe_matches(
    s: Search, source: Any, where: list[ColumnElement[bool]], limit: int | None = None
) -> int:
    """Copy the listing ids, facet columns, score and sort keys of the rows of
    ``source`` meeting ``where`` (at most ``limit`` of them) into their table
    (the plans that score or count row by row read them there); how many."""
    _reset(s.session, _MATCHED)
    sources = sources_of(s)
    values = {
        "id": col(_LS.id),
        "listing_id": col(_LS.listing_id),
        "category": col(_LS.category),
        "classification": col(_LS.classification),
        "pricing_model": col(_LS.pricing_model),
        "custody": col(_LS.custody),
        "computation": col(_LS.computation),
        "grade": col(_LS.grade),
        "score": sources["score"],
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        # only the (long) title key when it is the order
        "title_key": col(_LS.title_key) if s.sort == "title" else literal(None),
    }
    query = select(*values.values()).select_from(source).where(and_(true(), *where)).limit(limit)
    outcome = s.session.execute(_MATCHED.insert().from_select(list(values), query))
    return int(outcome.rowcount)  # type: ignore[attr-defined]


def _in(table: Table) -> ColumnElement[bool]:
    """``listing_search.id`` among ``table``'s ids, as a check on the row: ``+ 0``
    keeps SQLite from driving the query from the temporary table."""
    return (col(_LS.id) + 0).in_(select(table.c.id))


# --------------------------------------------------------------------------- walked page


def _walk_page(s: Search) -> list[Row]:
    """The page of dense matches, walking the sort's index (see the module docstring)."""
    limit = s.params.limit + 1
    sources = sources_of(s)
    if s.sort != "relevance":
        query = page_query(s, sources, [_in(_IDS)], limit)
        return [tuple(row) for row in s.session.execute(query).all()]
    k = len(s.terms)
    _collect_high(s, k)
    high = {name: _HIGH.c[name] for name in ("score", "published_at", "price_fen", "listing_id")}
    rows = [tuple(row) for row in s.session.execute(page_query(s, high, [], limit)).all()]
    if len(rows) >= limit:
        return rows
    # the rest score exactly k: newest first, after the cursor if it is among them
    rest = replace(s, sort="newest", cursor_key=None)
    if s.cursor_key is not None:
        cursor_score, published_at, listing_id = s.cursor_key
        if cursor_score < k:
            return rows
        if cursor_score == k:
            rest.cursor_key = [published_at, listing_id]
    rest_sources = {**sources, "score": literal(k)}
    query = page_query(rest, rest_sources, [_in(_IDS), ~_in(_HIGH)], limit - len(rows))
    return rows + [(r[0], r[1], r[2], k, *r[3:]) for r in s.session.execute(query).all()]


def _collect_high(s: Search, k: int) -> None:
    """The matches scoring above ``k`` (the number of terms) into their table: the
    candidates are the listings with every gram of a term in their title or tags
    (exact for 1-2 character terms, a superset for longer ones), scored exactly."""
    _reset(s.session, _HIGH)
    alternatives = []
    for term in s.terms:
        grams = [fts5_string(g) for g in (bigrams(term) if len(term) >= TRIGRAM else [term])]
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
        "score": score(s.dialect, s.terms),
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
    }
    query = select(*values.values()).where(col(_LS.id).in_(candidates), _in(_IDS))
    s.session.execute(_HIGH.insert().from_select(list(values), query))
    # (scored once: a score > k condition in the query would compute it twice)
    s.session.execute(_HIGH.delete().where(_HIGH.c.score <= k))


# --------------------------------------------------------------------------- bitmap facets


def _bitmap_facets(s: Search) -> Facets:
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
            for name, facet in FACET_NAMES.items()
        }
    finally:
        cursor.close()
    return facets_of(tops)


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
    return top({value: n for value, n in counts.items() if n}, limit)
