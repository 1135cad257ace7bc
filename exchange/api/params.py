"""Path parameters naming the exchange's resources, with the shape their ids have.

Listing and order ids are the UUIDs their creating records carry (``listing_id`` of
``listing.drafted``, ``order_id`` of ``order.placed``; the same patterns), webhook ids
the UUIDs the exchange gives them: anything else names nothing and is refused (422
``invalid_request``) before a query is built, so no stray text (a NUL, which
PostgreSQL refuses in a parameter) reaches the database.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from exchange.listings.schemas import ListingId
from exchange.orders.schemas import OrderId

__all__ = ["UUID_PATTERN", "ListingIdPath", "OrderIdPath"]

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""A UUID as ``str(uuid.uuid4())`` writes it (lowercase)."""

ListingIdPath = Annotated[ListingId, Path(description="The listing's UUID.")]
OrderIdPath = Annotated[OrderId, Path(description="The order's UUID.")]
