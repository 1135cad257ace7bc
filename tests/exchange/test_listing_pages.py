"""A page of listings is read in a fixed number of queries, whatever its size: each
listing's providers, current version, quality summary and certificate number are
read for the whole page at once (exchange.listings.service.listings_public)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlmodel import Session, col
from test_auth_support import Exchange, running_exchange
from test_orders import BACKENDS
from test_quality_search import graded, publish, report

from exchange.listings.models import Listing
from exchange.listings.service import listing_public, listings_public


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def statements(session: Session, rows: list[Listing]) -> tuple[int, list[Any]]:
    """How many statements ``listings_public`` runs for ``rows``, and its answer."""
    seen: list[str] = []
    connection = session.connection()

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(connection, "before_cursor_execute", count)
    try:
        answer = listings_public(session, rows)
    finally:
        event.remove(connection, "before_cursor_execute", count)
    return len(seen), answer


def test_a_page_costs_the_same_queries_for_two_listings_as_for_six(ex: Exchange) -> None:
    owner, partner = ex.provider("owner"), ex.provider("partner")
    for n in range(6):
        listing_id = publish(ex, owner if n % 2 else partner, f"公交客流 {n}")
        if n % 3:
            report(ex, owner if n % 2 else partner, listing_id, graded(10 - n))
    with Session(ex.app.state.engine) as session:
        rows = list(session.execute(select(Listing).order_by(col(Listing.id))).scalars())
        assert len(rows) == 6
        one_by_one = [listing_public(session, row) for row in rows]
        # a small page with one listing that has a quality report and one that has none
        graded_row = next(r for r, shown in zip(rows, one_by_one, strict=True) if shown.quality)
        plain_row = next(r for r, shown in zip(rows, one_by_one, strict=True) if not shown.quality)
        few, _ = statements(session, [graded_row, plain_row])
        many, page = statements(session, rows)
        assert few == many <= 6
        assert page == one_by_one  # the same answers as listing by listing
        assert sum(listing.quality is not None for listing in page) == 4
        assert all(listing.certificate is not None for listing in page)
