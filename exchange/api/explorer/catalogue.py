"""``/``: the catalogue of published listings, a search box and facets, read through
the search service the API's ``GET /listings/search`` uses; the query is the
page's URL (every facet is a link), so a search can be bookmarked and shared."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import QueryParams

from exchange.api.deps import OperatorsDep, SessionDep
from exchange.api.explorer.rendering import PageParamError, html_errors, render, text_param
from exchange.listings import search
from exchange.listings.search.params import MAX_TAGS
from exchange.participants.directory import display_names

__all__ = ["CatalogueQuery", "router"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 20

SORTS = {
    "relevance": "相关度 Relevance",
    "newest": "最新 Newest",
    "price_asc": "价格升序 Price ↑",
    "price_desc": "价格降序 Price ↓",
    "title": "标题 Title",
}
FACET_LABELS = {
    "category": "类别 Category",
    "classification": "分级 Classification",
    "pricing_model": "计价 Pricing",
    "custody": "托管 Custody",
    "computation": "可算不可见 Computation",
    "tags": "标签 Tags",
}
VALUE_LABELS = {
    "custody": {"provider": "提供方 provider", "exchange": "交易所 exchange"},
    "computation": {"true": "提供 offered", "false": "不提供 none"},
    "pricing_model": {
        "free": "免费 free",
        "fixed": "一口价 fixed",
        "tiers": "阶梯 tiers",
        "subscription": "订阅 subscription",
    },
}
"""How a facet's value reads (others read as they are)."""
_CHOICES: dict[str, tuple[str, ...]] = {
    "classification": get_args(search.SearchClassification),
    "pricing_model": get_args(search.PricingModel),
    "custody": get_args(search.SearchCustody),
    "computation": ("true", "false"),
    "sort": tuple(SORTS),
}


@dataclass(frozen=True)
class CatalogueQuery:
    """What the catalogue's URL asks (the search's parameters as strings)."""

    q: str | None = None
    category: str | None = None
    classification: str | None = None
    pricing_model: str | None = None
    custody: str | None = None
    computation: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    sort: str | None = None
    cursor: str | None = None

    @classmethod
    def parse(cls, params: QueryParams) -> CatalogueQuery:
        """The query of ``params``; 422 ``invalid_request`` for a value the search
        cannot take."""
        values: dict[str, Any] = {
            "q": text_param(params.get("q"), "q", max_length=200),
            "category": text_param(params.get("category"), "category", max_length=100),
            "cursor": text_param(params.get("cursor"), "cursor", max_length=2000),
        }
        for name, choices in _CHOICES.items():
            value = text_param(params.get(name), name, max_length=50)
            if value is not None and value not in choices:
                raise PageParamError(f"{name} must be one of {', '.join(choices)}")
            values[name] = value
        tags = [text_param(t, "tag", max_length=50) for t in params.getlist("tag")]
        values["tags"] = tuple(dict.fromkeys(t for t in tags if t is not None))
        if len(values["tags"]) > MAX_TAGS:
            raise PageParamError(f"at most {MAX_TAGS} tags")
        if values["sort"] == "relevance" and values["q"] is None:
            values["sort"] = None
        return cls(**values)

    def search_params(self) -> search.SearchParams:
        return search.SearchParams(
            q=self.q,
            category=self.category,
            classification=self.classification,
            pricing_model=self.pricing_model,
            custody=self.custody,
            computation=None if self.computation is None else self.computation == "true",
            tags=self.tags,
            sort=self.sort,  # type: ignore[arg-type]  # checked against SORTS
            cursor=self.cursor,
            limit=PAGE_SIZE,
            facets=True,
        )

    def url(self, **changes: Any) -> str:
        """This query's URL with ``changes`` (a new filter starts from the first page)."""
        return replace(self, cursor=None, **changes).href()

    def next_page(self, cursor: str) -> str:
        return replace(self, cursor=cursor).href()

    def href(self) -> str:
        """This query as the catalogue's URL (empty parts left out)."""
        pairs = [
            (name, value)
            for name in ("q", "category", "classification", "pricing_model", "custody")
            if (value := getattr(self, name)) is not None
        ]
        if self.computation is not None:
            pairs.append(("computation", self.computation))
        pairs.extend(("tag", t) for t in self.tags)
        if self.sort is not None:
            pairs.append(("sort", self.sort))
        if self.cursor is not None:
            pairs.append(("cursor", self.cursor))
        return "/?" + urlencode(pairs) if pairs else "/"

    def selected(self, facet: str, value: str) -> bool:
        if facet == "tags":
            return value in self.tags
        return bool(getattr(self, facet) == value)

    def toggle(self, facet: str, value: str) -> str:
        """The URL with ``facet=value`` added, or removed when it is selected."""
        if facet == "tags":
            tags = tuple(t for t in self.tags if t != value)
            return self.url(tags=tags if value in self.tags else (*self.tags, value))
        return self.url(**{facet: None if self.selected(facet, value) else value})


@router.get("/", response_class=HTMLResponse)
@html_errors
def catalogue(request: Request, session: SessionDep, operators: OperatorsDep) -> HTMLResponse:
    query = CatalogueQuery.parse(request.query_params)
    found = search.search(session, query.search_params())
    providers = {key_id for hit in found.items for key_id in hit.providers}
    return render(
        "catalogue.html",
        page="catalogue",
        title="目录 Catalogue",
        query=query,
        found=found,
        names=display_names(session, operators, providers),
        sorts=SORTS,
        facet_labels=FACET_LABELS,
        value_labels=VALUE_LABELS,
        next_url=None if found.next_cursor is None else query.next_page(found.next_cursor),
    )
