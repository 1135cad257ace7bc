"""One search being run, and the queries every plan is built from: the filter
conditions, the page in the sort's order after the cursor (keyset), the grouped
total and facet counts, and the answer. With them, the two plans both backends
run: the plain plan (the reference every other plan is checked against) and
the whole index (no text, no filter)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlmodel import Session, col

from exchange.listings.models import ListingProvider
from exchange.listings.search.index import ListingSearch, ListingSearchTag
from exchange.listings.search.page import (
    COLUMN_FACETS,
    FACET_NAMES,
    Row,
    column_counts,
    facets_of,
    hits,
    top,
)
from exchange.listings.search.params import ORDER_KEYS, SearchParams, clean, encode_cursor
from exchange.listings.search.terms import plain_text, score
from ledger.protocol.search import FacetCount, Facets, SearchPage

__all__ = [
    "CAP",
    "Search",
    "capped_count",
    "filters",
    "grouped_facets",
    "indexed",
    "page_query",
    "result",
    "search_everything",
    "search_plain",
    "sources_of",
]

# The counts that choose a plan stop here.
CAP = 20_000

_LS = ListingSearch


@dataclass
class Search:
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
            (sources[name], desc) for name, desc in ORDER_KEYS[self.sort]
        ]
        order.append((sources["listing_id"], False))
        return order


def filters(
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
        conditions.append(col(_LS.category) == clean(params.category, "category"))
    if params.classification is not None:
        conditions.append(col(_LS.classification) == params.classification)
    if params.pricing_model is not None:
        conditions.append(col(_LS.pricing_model) == params.pricing_model)
    if params.custody is not None:
        conditions.append(col(_LS.custody) == params.custody)
    if params.computation is not None:
        conditions.append(col(_LS.computation) == params.computation)
    if params.grade is not None:
        conditions.append(col(_LS.grade) == params.grade)
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
                col(ListingSearchTag.tag) == clean(tag, "tag")
            )
        )
    bound: int | None = None  # at least as many rows as meet the conditions
    if dialect == "sqlite" and conditions and (lists or terms):
        bound = capped_count(session, select(col(_LS.id)).where(*conditions))
    key: Any = col(_LS.listing_id)
    if lists and dialect == "sqlite":
        narrowest = min(capped_count(session, listed) for listed in lists)
        if bound is not None and bound <= narrowest:
            key = key.concat("")
        bound = narrowest if bound is None else min(bound, narrowest)
    conditions.extend(key.in_(listed) for listed in lists)
    return conditions, bound


def capped_count(session: Session, query: Any) -> int:
    """``min(count of query's rows, CAP + 1)``: bounded work, through the indexes."""
    bounded = query.limit(CAP + 1).subquery()
    return int(session.execute(select(func.count()).select_from(bounded)).scalar_one())


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


def sources_of(s: Search) -> dict[str, Any]:
    """The score and sort key columns, read from ``listing_search``."""
    return {
        "score": score(s.dialect, s.terms) if s.terms else literal(None),
        "published_at": col(_LS.published_at),
        "price_fen": col(_LS.price_fen),
        "title_key": col(_LS.title_key),
        "listing_id": col(_LS.listing_id),
    }


def page_query(
    s: Search, sources: dict[str, Any], conditions: list[ColumnElement[bool]], limit: int
) -> Any:
    """The page (``limit`` rows) of the rows meeting ``conditions`` in the search's
    order, after its cursor; rows as :data:`~exchange.listings.search.page.Row`."""
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


def result(s: Search, rows: Sequence[Row], total: int, facets: Facets | None) -> SearchPage:
    """The answer: the page's hits (one row more than the page says there is a
    next page, whose cursor is the last hit's sort key), the total, the facets."""
    more = len(rows) > s.params.limit
    rows = rows[: s.params.limit]
    items = hits(s.session, [(r[0], r[1], r[2]) for r in rows])
    next_cursor = None
    if more and rows:
        next_cursor = encode_cursor(s.sort, s.fingerprint, list(rows[-1][3:]))
    return SearchPage(items=tuple(items), next_cursor=next_cursor, total=total, facets=facets)


def grouped_facets(
    session: Session,
    conditions: list[ColumnElement[bool]],
    params: SearchParams,
    matched: Table | None,
    total: int | None,
) -> tuple[int, Facets | None]:
    """The total and the facet counts over every match: from the materialised
    match set when there is one (it carries the facet columns), else with the
    conditions (one grouped query for the column facets, one for the tags)."""
    where = and_(true(), *conditions)
    if not params.facets:
        if total is None:
            total = session.execute(select(func.count()).select_from(_LS).where(where)).scalar_one()
        return int(total), None
    columns: list[Any]
    if matched is not None:
        columns = [matched.c[name] for name in COLUMN_FACETS]
        grouped_query = select(*columns, func.count()).group_by(*columns)
    else:
        columns = [getattr(_LS, name) for name in COLUMN_FACETS]
        grouped_query = select(*columns, func.count()).where(where).group_by(*columns)
    grouped = session.execute(grouped_query).all()
    total, counts = column_counts((row[:-1], int(row[-1])) for row in grouped)
    tags: dict[str, int] = {}
    if total:
        tag_count = func.count().label("n")
        tag_query = select(col(ListingSearchTag.tag), tag_count)
        if matched is not None:
            # CROSS JOIN: SQLite keeps this order, the matches driving the covering
            # (listing_id, tag) index (it has no statistics on the temp table)
            tag_query = select(literal_column("t.tag"), tag_count).select_from(
                text(
                    f"{matched.name} AS m CROSS JOIN listing_search_tag AS t "
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
    tops = {name: top(values, limit) for name, values in counts.items()}
    return total, facets_of({**tops, "tags": top(tags, limit)})


def indexed(session: Session) -> int:
    """How many listings the index holds (each has one category)."""
    return int(
        session.execute(
            text("SELECT coalesce(sum(listings), 0) FROM listing_search_facet WHERE facet = :f"),
            {"f": "category"},
        ).scalar_one()
    )


def search_plain(s: Search) -> SearchPage:
    """One query for the page; the total and facets with grouped queries."""
    conditions = s.filters + plain_text(s.dialect, s.terms)
    rows = s.session.execute(page_query(s, sources_of(s), conditions, s.params.limit + 1)).all()
    total, facets = grouped_facets(s.session, conditions, s.params, None, None)
    return result(s, rows, total, facets)


def search_everything(s: Search) -> SearchPage:
    """No text and no filter: the page through the sort's index, the total and the
    facets from the counts the triggers keep."""
    rows = s.session.execute(page_query(s, sources_of(s), [], s.params.limit + 1)).all()
    total = indexed(s.session)
    facets = None
    if s.params.facets:
        tops = {
            name: [
                FacetCount(value, int(count))
                for value, count in s.session.execute(
                    text(
                        "SELECT value, listings FROM listing_search_facet WHERE facet = :facet "
                        "ORDER BY listings DESC, value LIMIT :limit"
                    ),
                    {"facet": facet, "limit": s.params.facet_limit},
                ).all()
            ]
            for name, facet in FACET_NAMES.items()
        }
        facets = facets_of(tops)
    return result(s, rows, total, facets)
