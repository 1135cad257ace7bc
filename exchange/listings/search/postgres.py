"""The PostgreSQL plan of a search with text: one statement.

The matches once (a MATERIALIZED CTE: the text is checked once, not once per
query), then the page, the total, the column facets' counts and the top tags
(from the per-listing ``tags`` array) from them, as JSON; JIT off for it.

The text: ``LIKE`` (trigram GIN) for 3+ characters; gram-array containment
(GIN) for 1-2, or ``strpos`` when the gram index's statistics say the term is
in at least :data:`COMMON_GRAM` of the listings (a scan either way, and
``strpos`` is the cheaper check).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, and_, func, literal, literal_column, select, text, true
from sqlmodel import Session, col

from exchange.listings.search.index import ListingSearch
from exchange.listings.search.page import (
    COLUMN_FACETS,
    column_counts,
    facets_of,
    top,
)
from exchange.listings.search.params import ORDER_KEYS
from exchange.listings.search.query import Search, page_query, result, sources_of
from exchange.listings.search.terms import TRIGRAM, postgres_text
from ledger.protocol.search import SearchPage

__all__ = ["COMMON_GRAM", "POSTGRES_WORK_MEM", "search_postgres"]

# A 1-2 character term in at least this share of the listings is checked on the
# rows (strpos) instead of through the gram index. Up to about half the listings
# the planner takes the gram index (a bitmap scan, ~40 ms at 50% of 100k); past
# that it scans, splitting every row's grams (~600 ms at 100k), where strpos on
# the same scan costs ~100 ms. Kept below the switch.
COMMON_GRAM = 0.4
# work_mem for the search's statement (its matches are kept once).
POSTGRES_WORK_MEM = "32MB"

_LS = ListingSearch
_SOURCE_NAMES = ("score", "published_at", "price_fen", "title_key", "listing_id")


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


def search_postgres(s: Search) -> SearchPage:
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
    sources = sources_of(s)
    matched_columns = {
        "listing_id": col(_LS.listing_id),
        "score": sources["score"],
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        "title_key": col(_LS.title_key) if s.sort == "title" else literal(None, Text),
        **{name: getattr(_LS, name) for name in COLUMN_FACETS},
        "tags": col(_LS.tags),
    }
    conditions = s.filters + postgres_text(s.terms, _common_grams(session, s.terms))
    m = (
        select(*(c.label(name) for name, c in matched_columns.items()))
        .where(and_(true(), *conditions))
        .cte("m")
        .prefix_with("MATERIALIZED")
    )
    page = page_query(
        s, {name: m.c[name] for name in _SOURCE_NAMES}, [], s.params.limit + 1
    ).subquery("p")
    parts: list[Any] = [
        select(func.coalesce(func.json_agg(literal_column("p")), text("'[]'::json")))
        .select_from(page)
        .scalar_subquery(),
        select(func.count()).select_from(m).scalar_subquery(),
    ]
    if s.params.facets:
        facet_columns = [m.c[name] for name in COLUMN_FACETS]
        grouped = (
            select(*facet_columns, func.count().label("n")).group_by(*facet_columns).subquery("f")
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
    names = [f"k{i}" for i in range(len(ORDER_KEYS[s.sort]) + 1)]
    rows = [(r["listing_id"], r["score"], r["price_fen"], *(r[k] for k in names)) for r in found[0]]
    total = int(found[1])
    facets = None
    if s.params.facets:
        _, counts = column_counts(
            ([group[name] for name in COLUMN_FACETS], int(group["n"])) for group in found[2]
        )
        tops = {name: top(values, s.params.facet_limit) for name, values in counts.items()}
        tags = {t["value"]: int(t["n"]) for t in found[3]}
        facets = facets_of({**tops, "tags": top(tags, s.params.facet_limit)})
    return result(s, rows, total, facets)
