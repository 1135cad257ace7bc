"""What a search answers, built from the index and the listings: the hits, the facet
counts and their top values. The answer's shape (page, hits, facets) is
:mod:`ledger.protocol.search`, which the SDK parses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.listings.models import Listing, ListingProvider
from exchange.listings.search.index import price_unit
from exchange.participants.models import Participant
from ledger.protocol.search import SUMMARY_CHARS, FacetCount, Facets, SearchHit

__all__ = [
    "COLUMN_FACETS",
    "FACET_NAMES",
    "Row",
    "column_counts",
    "facets_of",
    "hits",
    "top",
]

Row = tuple[Any, ...]
"""A page row: (listing_id, score, price_fen, *sort key ending with the listing id)."""

FACET_NAMES = {
    # the page's facet → its name in listing_search_facet / listing_search_bitmap
    "category": "category",
    "classification": "classification",
    "pricing_model": "pricing_model",
    "custody": "custody",
    "computation": "computation",
    "grade": "grade",
    "tags": "tag",
}

COLUMN_FACETS = ("category", "classification", "pricing_model", "custody", "computation", "grade")
"""The facets that are columns of ``listing_search`` (counted by grouping on them)."""


def hits(session: Session, found: list[tuple[str, int | None, int]]) -> list[SearchHit]:
    """The hits of (listing id, score, price_fen), in that order."""
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
        col(Listing.computation),
        col(Listing.custody),
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
    owners = {row.owner_key_id for row in listings.values()}
    names = dict(
        session.execute(
            select(col(Participant.key_id), col(Participant.display_name)).where(
                col(Participant.key_id).in_(owners)
            )
        ).all()
    )
    found_hits = []
    for listing_id, score, price_fen in found:
        row = listings.get(listing_id)
        if row is None:  # removed between the two reads
            continue
        found_hits.append(
            SearchHit(
                id=row.id,
                title=row.title,
                summary=row.description[:SUMMARY_CHARS],
                category=row.category,
                tags=tuple(row.tags),
                classification=row.classification,
                owner=row.owner_key_id,
                provider_name=names.get(row.owner_key_id, ""),
                providers=tuple(providers[listing_id]),
                pricing=row.pricing,
                price_fen=price_fen,
                price_unit=price_unit(row.pricing),
                format=row.format,
                row_count=row.row_count,
                byte_size=row.byte_size,
                version=row.version,
                update_frequency=row.update_frequency,
                published_at=row.published_at or row.updated_at,
                custody=row.custody,
                score=score,
                computation=row.computation,
            )
        )
    return found_hits


def facets_of(tops: dict[str, list[FacetCount]]) -> Facets:
    return Facets(**{name: tuple(tops[name]) for name in FACET_NAMES})


def column_counts(
    groups: Iterable[tuple[Sequence[Any], int]],
) -> tuple[int, dict[str, dict[str, int]]]:
    """The total and each column facet's value counts, from groups of (the values
    of :data:`COLUMN_FACETS`, how many listings). A null (classification, grade) is no
    value; computation counts as ``true``/``false``."""
    total = 0
    counts: dict[str, dict[str, int]] = {name: {} for name in COLUMN_FACETS}
    for values, count in groups:
        total += count
        for name, value in zip(COLUMN_FACETS, values, strict=True):
            if value is None:
                continue
            key = ("true" if value else "false") if name == "computation" else value
            counts[name][key] = counts[name].get(key, 0) + count
    return total, counts


def top(counts: dict[str, int], limit: int) -> list[FacetCount]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [FacetCount(value, count) for value, count in ranked[:limit]]
