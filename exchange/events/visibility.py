"""Who may see which event: the one place that decides it.

An event about an order is visible to the record's actor, the order's buyer and
the providers of the order's listing (its owner and co-providers, as they are
now); ``anchor.final`` is about the public log and visible to every participant;
operators see everything. :func:`order_parties` reads what that needs for a batch
of orders in two queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.listings.models import Listing, ListingProvider
from exchange.orders.models import Order

__all__ = ["EVERYONE", "Audience", "OrderParties", "Viewer", "audience_of", "order_parties"]


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is reading the feed (or owns the webhook)."""

    key_id: str
    operator: bool = False


@dataclass(frozen=True, slots=True)
class OrderParties:
    order_id: str
    listing_id: str
    buyer: str
    providers: frozenset[str]
    """The listing's owner and co-providers."""


@dataclass(frozen=True, slots=True)
class Audience:
    """Who may see one event (besides the operators, who see all)."""

    everyone: bool = False
    parties: frozenset[str] = frozenset()

    def admits(self, viewer: Viewer) -> bool:
        return viewer.operator or self.everyone or viewer.key_id in self.parties


EVERYONE = Audience(everyone=True)


def audience_of(actor: str, order: OrderParties | None) -> Audience:
    """The audience of a record by ``actor`` about ``order`` (``None``: no such order,
    which an event record never lacks; then only the actor and operators see it)."""
    parties = {actor}
    if order is not None:
        parties.add(order.buyer)
        parties.update(order.providers)
    return Audience(parties=frozenset(parties))


def order_parties(session: Session, order_ids: Collection[str]) -> Mapping[str, OrderParties]:
    """The parties of each of ``order_ids`` that exists."""
    if not order_ids:
        return {}
    orders = session.execute(
        select(col(Order.id), col(Order.listing_id), col(Order.buyer_key_id)).where(
            col(Order.id).in_(sorted(set(order_ids)))
        )
    ).all()
    listing_ids = sorted({listing_id for _, listing_id, _ in orders})
    providers: dict[str, set[str]] = defaultdict(set)
    if listing_ids:
        for listing_id, owner in session.execute(
            select(col(Listing.id), col(Listing.owner_key_id)).where(
                col(Listing.id).in_(listing_ids)
            )
        ):
            providers[listing_id].add(owner)
        for listing_id, provider in session.execute(
            select(col(ListingProvider.listing_id), col(ListingProvider.provider_key_id)).where(
                col(ListingProvider.listing_id).in_(listing_ids)
            )
        ):
            providers[listing_id].add(provider)
    return {
        order_id: OrderParties(order_id, listing_id, buyer, frozenset(providers[listing_id]))
        for order_id, listing_id, buyer in orders
    }
