"""Listing search: full text, filters, sort, cursor pagination and facets over
the index of published listings (:mod:`exchange.listings.search.index`).

* ``q``: up to :data:`~exchange.listings.search.terms.MAX_TERMS`
  whitespace-separated terms, each NFKC case-folded; every term must occur (as
  a substring, so Chinese needs no spaces) in the title, tags or description.
  Query syntax is never interpreted: quotes, ``*``, ``NEAR``, ``-``,
  parentheses are literal text.
* filters: ``category``, ``classification``, ``pricing_model``,
  ``min_price``/``max_price`` (fen, inclusive, on ``price_fen``; see
  :func:`~exchange.listings.search.index.price_fen`), ``provider`` (a key id
  among the listing's providers), ``tag`` (repeatable: all of them),
  ``custody`` (``provider`` or ``exchange``: who holds the data),
  ``computation`` (``true``: the current version offers computations),
  ``grade`` (``A``..``D``: the current version's quality grade, docs/quality.md).
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
* facets: counts of category, classification, pricing model, custody,
  computation (``true``/``false``), quality grade and the top tags over every listing
  matching the query and filters (not only the page).
  Always exact (never sampled, estimated or capped), whichever plan counts them.

The modules, each importing only the ones above it (never this package's
``__init__``):

* ``index``: the index tables, what a listing's row holds, keeping it in sync
  (and the raw SQL of its full-text and facet indexes and triggers);
* ``params``: the parameters, their checks, the sort orders, the cursor codec;
* ``terms``: the query's terms and the SQL that matches them;
* ``page``: the response's hits and facets (its shape is
  :mod:`ledger.protocol.search`);
* ``query``: one search being run, the queries every plan is built from, the
  plain plan and the whole-index plan;
* ``postgres`` / ``sqlite``: each backend's plans (SQLite's with the bitmap facets);
* ``planner``: :func:`search`, which checks the parameters and picks the plan.
"""

from __future__ import annotations

from exchange.listings.search.index import index_values, set_current_grade, sync
from exchange.listings.search.params import (
    InvalidCursorError,
    InvalidQueryError,
    PricingModel,
    SearchClassification,
    SearchCustody,
    SearchGrade,
    SearchParams,
    Sort,
)
from exchange.listings.search.planner import search

__all__ = [
    "InvalidCursorError",
    "InvalidQueryError",
    "PricingModel",
    "SearchClassification",
    "SearchCustody",
    "SearchGrade",
    "SearchParams",
    "Sort",
    "index_values",
    "search",
    "set_current_grade",
    "sync",
]
