"""Which plan runs a search. The results do not depend on it: :data:`PLAIN` runs
the plain plan (one query for the page, grouped queries for the facets, ``instr``
for the text), and tests/exchange/test_search_plans.py checks every other choice
against it, page by page.

* No text and no filter (the whole index), both backends: the page through the
  sort's index; total and facets read from the counts the triggers keep
  (:func:`~exchange.listings.search.query.search_everything`).
* PostgreSQL with text: one statement (:mod:`exchange.listings.search.postgres`).
* SQLite with text, or with filters and facets: a match set first, then the
  page and the facets by its size (:mod:`exchange.listings.search.sqlite`).
* Filters alone on PostgreSQL (and SQLite's filter-only searches without
  facets): one query for the page (through an index when one fits), grouped
  ones for the total and facets (the plain plan).
* Provider and tag filters are ``listing_id IN (...)``; on SQLite, when
  bounded counts show the column filters are the narrower, that IN only
  checks rows instead of driving the query
  (:func:`~exchange.listings.search.query.filters`).
"""

from __future__ import annotations

from sqlmodel import Session

from exchange.listings.search.params import (
    SearchParams,
    checked_sort,
    decode_cursor,
    fingerprint,
)
from exchange.listings.search.postgres import search_postgres
from exchange.listings.search.query import Search, filters, search_everything, search_plain
from exchange.listings.search.sqlite import connection_setup, search_matches
from exchange.listings.search.terms import terms_of
from ledger.protocol.search import SearchPage

__all__ = ["PLAIN", "search"]

PLAIN = False
"""True: every search runs the plain plan (the reference the tests compare with)."""


def search(session: Session, params: SearchParams) -> SearchPage:
    """One page of published listings matching ``params`` (see the package docstring)."""
    dialect = session.get_bind().dialect.name
    terms = terms_of(params.q)
    sort = checked_sort(params, terms)
    query_fingerprint = fingerprint(params, terms, sort)
    cursor_key = None
    if params.cursor is not None:
        cursor_key = decode_cursor(params.cursor, sort, query_fingerprint)
    if dialect == "sqlite":
        connection_setup(session)
    conditions, bound = filters(session, params, dialect, terms)
    s = Search(
        session, params, dialect, terms, sort, query_fingerprint, cursor_key, conditions, bound
    )
    if PLAIN or dialect not in ("sqlite", "postgresql"):
        return search_plain(s)
    if not terms and not conditions:
        return search_everything(s)
    if dialect == "postgresql":
        return search_postgres(s) if terms else search_plain(s)
    if not terms and not params.facets:
        return search_plain(s)
    return search_matches(s)
