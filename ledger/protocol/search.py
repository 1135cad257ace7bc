"""What a listing search answers (``GET /listings/search``), defined once: the
exchange serves these classes and the SDK parses them.

- :class:`SearchPage`: one page of hits, the total and the facets;
- :class:`SearchHit`: a published listing as search shows it (the listing itself
  has the rest);
- :class:`Facets`, :class:`FacetCount`: value counts over every listing matching
  the query and filters (not only the page).

``from_dict`` is strict about every field it reads and ignores fields it does not
know. Field descriptions sit in the fields' ``metadata`` (pydantic reads them into
the OpenAPI document, as it reads ``__pydantic_config__``, a plain dict, for the
page's example); no class docstrings, which would become schema descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from ledger.computation.offer import ComputationOffer
from ledger.protocol.listing import checked_offer
from ledger.protocol.reader import JSONObject

__all__ = ["SUMMARY_CHARS", "FacetCount", "Facets", "SearchHit", "SearchPage"]

SUMMARY_CHARS: Final = 300
"""A hit's summary is the first this many characters of the listing's description."""


@dataclass(frozen=True, slots=True)
class FacetCount:
    value: str
    count: int

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> FacetCount:
        o = JSONObject(data, where)
        return cls(o.text("value"), o.integer("count"))


def _counts(o: JSONObject, key: str) -> tuple[FacetCount, ...]:
    return o.items(key, FacetCount.from_dict) if key in o.data else ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Facets:
    category: tuple[FacetCount, ...]
    classification: tuple[FacetCount, ...]
    pricing_model: tuple[FacetCount, ...]
    custody: tuple[FacetCount, ...] = field(
        metadata={"description": "Who holds the data: provider or exchange."}
    )
    computation: tuple[FacetCount, ...] = field(
        metadata={"description": "Whether the current version offers computations: true or false."}
    )
    grade: tuple[FacetCount, ...] = field(
        default_factory=tuple,
        metadata={
            "description": "Quality grade of the current version (A to D; docs/quality.md); "
            "listings without a report are not counted."
        },
    )
    tags: tuple[FacetCount, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str = "facets") -> Facets:
        """Parse the facets (those an older exchange did not count: none)."""
        o = JSONObject(data, where)
        return cls(
            category=o.items("category", FacetCount.from_dict),
            classification=o.items("classification", FacetCount.from_dict),
            pricing_model=o.items("pricing_model", FacetCount.from_dict),
            custody=_counts(o, "custody"),
            computation=_counts(o, "computation"),
            grade=_counts(o, "grade"),
            tags=o.items("tags", FacetCount.from_dict),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit:
    id: str
    title: str
    summary: str = field(
        metadata={"description": f"The description's first {SUMMARY_CHARS} characters."}
    )
    category: str
    tags: tuple[str, ...]
    classification: str | None
    owner: str
    provider_name: str = field(
        default="", metadata={"description": "The owner's display name (as it registered)."}
    )
    providers: tuple[str, ...] = field(
        metadata={"description": "Key ids of the listing's providers."}
    )
    pricing: dict[str, Any]
    price_fen: int = field(
        metadata={
            "description": "The comparable price in fen: free 0, fixed price, subscription "
            "price_per_period, tiers the price of the first 1,000 rows."
        }
    )
    price_unit: str = field(
        default="",
        metadata={
            "description": "What price_fen buys: free, one-off, per 1,000 rows (tiers: the "
            "first tier's rate) or per N days (subscription).",
            "examples": ["per 1,000 rows"],
        },
    )
    format: str
    row_count: int
    byte_size: int
    version: int
    update_frequency: str
    published_at: int
    custody: str = field(
        metadata={"description": "Who holds the data: provider (its agent) or exchange."}
    )
    score: int | None = field(
        metadata={"description": "Relevance (with q): Σ 4·title + 2·tags + 1·description."}
    )
    computation: dict[str, Any] | None = field(
        default=None,
        metadata={"description": "The computation offer of the current version (null: none)."},
    )

    @property
    def computation_offer(self) -> ComputationOffer | None:
        """The current version's computation offer (``None``: none)."""
        return None if self.computation is None else ComputationOffer.from_dict(self.computation)

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> SearchHit:
        """Parse a hit (``custody`` absent, as from an older exchange: ``exchange``)."""
        o = JSONObject(data, where)
        return cls(
            id=o.text("id"),
            title=o.text("title"),
            summary=o.text("summary"),
            category=o.text("category"),
            tags=o.strings("tags"),
            classification=o.opt_text("classification"),
            owner=o.hex64("owner"),
            provider_name=o.opt_text("provider_name") or "",
            providers=o.strings("providers"),
            pricing=o.mapping("pricing"),
            price_fen=o.integer("price_fen"),
            price_unit=o.opt_text("price_unit") or "",
            format=o.text("format"),
            row_count=o.integer("row_count"),
            byte_size=o.integer("byte_size"),
            version=o.integer("version", minimum=1),
            update_frequency=o.text("update_frequency"),
            published_at=o.integer("published_at"),
            custody=o.opt_text("custody") or "exchange",
            score=o.opt_integer("score"),
            computation=checked_offer(o),
        )


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: tuple[SearchHit, ...]
    next_cursor: str | None = field(
        metadata={"description": "Pass as `cursor` for the next page; null at the end."}
    )
    total: int = field(metadata={"description": "How many listings match the query and filters."})
    facets: Facets | None

    __pydantic_config__: ClassVar[dict[str, Any]] = {
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

    @classmethod
    def from_dict(cls, data: Any) -> SearchPage:
        o = JSONObject(data, "")
        return cls(
            items=o.items("items", SearchHit.from_dict),
            next_cursor=o.opt_text("next_cursor"),
            total=o.integer("total"),
            facets=Facets.from_dict(o.raw("facets")) if o.has("facets") else None,
        )
