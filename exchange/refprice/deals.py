"""The comparables table's one write path (``reference_deal``).

:func:`stage_deal` is called by the settlement of an order, inside the
transaction of its ``settlement.paid`` record; :func:`withdraw_deal` by an
``access.revoked`` of that order. Both only stage rows on the session: the log's
append commits them with the record, or a refusal drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from exchange.listings.models import Listing
from exchange.refprice.models import ReferenceDeal
from ledger.pricing_reference import deal_unit_price

__all__ = ["stage_deal", "withdraw_deal"]


def stage_deal(
    session: Session,
    *,
    order_id: str,
    listing_id: str,
    version: int,
    terms: Mapping[str, Any],
    amount: int,
    settled_at: int,
    settled_leaf_hash: bytes,
) -> None:
    """Stage the deal of an order settled for ``amount`` fen by the ``settlement.paid``
    record (``settled_leaf_hash``, timestamp ``settled_at``), priced per unit under the
    listing's terms as they are now (``ledger.pricing_reference.deal_unit_price``);
    nothing for a deal that is no comparable (free, zero, no units)."""
    listing = session.get(Listing, listing_id)
    if listing is None:
        return
    priced = deal_unit_price(listing.pricing, terms, amount)
    if priced is None:
        return
    unit, unit_price = priced
    session.add(
        ReferenceDeal(
            order_id=order_id,
            listing_id=listing_id,
            version=version,
            category=listing.category,
            unit=unit,
            unit_price_fen=unit_price,
            settled_at=settled_at,
            update_frequency=listing.update_frequency,
            settled_leaf_hash=settled_leaf_hash,
        )
    )


def withdraw_deal(session: Session, order_id: str) -> None:
    """Stage the removal of the order's deal, if it has one (its access was revoked)."""
    deal = session.get(ReferenceDeal, order_id)
    if deal is not None:
        session.delete(deal)
