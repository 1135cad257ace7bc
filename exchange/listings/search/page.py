"""What a search answers: a page of hits, the total and the facets (the response
models, the hits read from the listings, the top facet values)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import Session, col

from exchange.listings.models import Listing, ListingProvider
from exchange.listings.search.index import price_unit
from exchange.participants.models import Participant

__all__ = [
    "COLUMN_FACETS",
    "FACET_NAMES",
    "SUMMARY_CHARS",
    "FacetCount",
    "Facets",
    "Row",
    "SearchHit",
    "SearchPage",
    "column_counts",
    "facets_of",
    "hits",
    "top",
]

SUMMARY_CHARS = 300


class FacetCount(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    category: list[FacetCount]
    classification: list[FacetCount]
    pricing_model: list[FacetCount]
    custody: list[FacetCount] = Field(description="Who holds the data: provider or exchange.")
    computation: list[FacetCount] = Field(
        description="Whether the current version offers computations: true or false."
    )
    grade: list[FacetCount] = Field(
        default_factory=list,
        description="Quality grade of the current version (A to D; docs/quality.md); "
        "listings without a report are not counted.",
    )
    tags: list[FacetCount]


class SearchHit(BaseModel):
    id: str
    title: str
    summary: str = Field(description=f"The description's first {SUMMARY_CHARS} characters.")
    category: str
    tags: list[str]
    classification: str | None
    owner: str
    provider_name: str = Field(
        default="", description="The owner's display name (as it registered)."
    )
    providers: list[str] = Field(description="Key ids of the listing's providers.")
    pricing: dict[str, Any]
    price_fen: int = Field(
        description="The comparable price in fen: free 0, fixed price, subscription "
        "price_per_period, tiers the price of the first 1,000 rows."
    )
    price_unit: str = Field(
        default="",
        description="What price_fen buys: free, one-off, per 1,000 rows (tiers: the first "
        "tier's rate) or per N days (subscription).",
        examples=["per 1,000 rows"],
    )
    format: str
    row_count: int
    byte_size: int
    version: int
    update_frequency: str
    published_at: int
    custody: str = Field(description="Who holds the data: provider (its agent) or exchange.")
    score: int | None = Field(description="Relevance (with q): Σ 4·title + 2·tags + 1·description.")
    computation: dict[str, Any] | None = Field(
        default=None, description="The computation offer of the current version (null: none)."
    )


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
                            "custody": "provider",
                            "score": 4,
                        }
                    ],
                    "next_cursor": "eyJ2IjoxLCJzIjoicmVsZXZhbmNlIn0",
                    "total": 1,
                    "facets": {
                        "category": [{"value": "transport", "count": 1}],
                        "classification": [{"value": "一般", "count": 1}],
                        "pricing_model": [{"value": "fixed", "count": 1}],
                        "custody": [{"value": "provider", "count": 1}],
                        "computation": [{"value": "false", "count": 1}],
                        "tags": [
                            {"value": "chongqing", "count": 1},
                            {"value": "traffic", "count": 1},
                        ],
                    },
                }
            ]
        }
    }


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
                tags=row.tags,
                classification=row.classification,
                owner=row.owner_key_id,
                provider_name=names.get(row.owner_key_id, ""),
                providers=providers[listing_id],
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
    return Facets.model_construct(None, **{name: tops[name] for name in FACET_NAMES})


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
    return [FacetCount.model_construct(value=value, count=count) for value, count in ranked[:limit]]
