"""``/explore/listings/{id}``: one listing for people (its JSON is ``GET
/listings/{id}``, which stays as it is): what it is, its schema, sample rows,
custody, price, declarations, computation offer and versions, and any further
field the listing carries (rendered as it comes), read through the listing
service the API uses: drafts and listings under review are not shown (404), as
to anyone unsigned."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter

from exchange.api.deps import OperatorsDep, SessionDep
from exchange.api.explorer.rendering import PageParamError, html_errors, render
from exchange.listings import service
from exchange.participants.directory import display_names
from ledger.protocol.listing import Column, Listing

__all__ = ["SHOWN_FIELDS", "router"]

router = APIRouter(include_in_schema=False)

_LISTING_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

SHOWN_FIELDS = frozenset(
    {
        "id",
        "state",
        "owner",
        "title",
        "description",
        "category",
        "tags",
        "providers",
        "columns",
        "sample_rows",
        "row_count",
        "byte_size",
        "content_digest",
        "format",
        "update_frequency",
        "version",
        "licence",
        "usage_terms",
        "pricing",
        "declarations",
        "computation",
        "custody",
        "delivery_window_s",
        "row_root",
        "rejection_reason",
        "delisting_reason",
        "created_at",
        "updated_at",
        "published_at",
    }
)
"""Fields the page lays out itself; any other field of the listing is shown generically
under its own name (quality reports, certificates, policies, as they come)."""


_ADAPTERS: dict[type[Listing], TypeAdapter[Listing]] = {}


def _as_json(listing: Listing) -> dict[str, Any]:
    """The listing's fields as its JSON answer has them."""
    shape = type(listing)
    adapter = _ADAPTERS.get(shape) or _ADAPTERS.setdefault(shape, TypeAdapter(shape))
    data: dict[str, Any] = adapter.dump_python(listing, mode="json")
    return data


def _sample_columns(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    named = [c.name for c in columns]
    extra = [k for row in rows for k in row if k not in named]
    return [n for n in named if any(n in row for row in rows)] + list(dict.fromkeys(extra))


@router.get("/explore/listings/{listing_id}", response_class=HTMLResponse)
@html_errors
def listing_page(listing_id: str, session: SessionDep, operators: OperatorsDep) -> HTMLResponse:
    if not _LISTING_ID.fullmatch(listing_id):
        raise PageParamError("a listing id is a lower-case UUID")
    listing = service.get(session, listing_id, None)
    versions = service.versions(session, listing_id, None)
    data = _as_json(listing)
    extra = {name: value for name, value in data.items() if name not in SHOWN_FIELDS}
    keys = {listing.owner, *(p.key_id for p in listing.providers)}
    return render(
        "listing.html",
        page="listing",
        title=listing.title,
        listing=listing,
        versions=versions,
        extra={k: v for k, v in extra.items() if v not in (None, [], {})},
        sample_columns=_sample_columns(listing.sample_rows, listing.columns),
        names=display_names(session, operators, keys),
    )
