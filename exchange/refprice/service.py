"""A listing's reference price, as of the log's current size (docs/pricing.md).

The arithmetic is :mod:`ledger.pricing_reference` (the same functions an auditor
runs over the public log); this module only reads what they need: the listing,
the log's size and last promise time (``as_of``), and the newest comparables
from ``reference_deal`` through its ``(category, unit, settled_at)`` index,
limited to deals whose ``settlement.paid`` entry is within ``as_of.log_size``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.listings.service import load_visible
from exchange.log.models import LogEntry, PromiseBatchRow
from exchange.participants.models import Principal
from exchange.refprice.grades import grades_of
from exchange.refprice.models import ReferenceDeal
from ledger.pricing_reference import (
    MAX_COMPARABLES,
    WINDOW_MS,
    AsOf,
    Deal,
    Subject,
    pricing_unit,
    reference_price,
    select_comparables,
)

__all__ = ["as_of", "comparables", "listing_reference_price"]


def as_of(session: Session) -> AsOf:
    """The log's size and the promise time of its last entry (``(0, 0)``: empty)."""
    row = session.execute(
        select(col(LogEntry.index), col(PromiseBatchRow.timestamp))
        .join(PromiseBatchRow, col(PromiseBatchRow.first_index) == col(LogEntry.batch_first_index))
        .order_by(col(LogEntry.index).desc())
        .limit(1)
    ).first()
    if row is None:
        return AsOf(0, 0)
    return AsOf(int(row[0]) + 1, int(row[1]))


def comparables(session: Session, subject: Subject, unit: str, at: AsOf) -> list[Deal]:
    """The newest comparables of ``subject`` (one indexed query, at most
    :data:`MAX_COMPARABLES` rows)."""
    deal = ReferenceDeal
    rows = session.execute(
        select(
            col(deal.order_id),
            col(deal.listing_id),
            col(deal.version),
            col(deal.category),
            col(deal.unit),
            col(deal.unit_price_fen),
            col(deal.settled_at),
            col(deal.update_frequency),
        )
        .join(LogEntry, col(LogEntry.leaf_hash) == col(deal.settled_leaf_hash))
        .where(
            col(deal.category) == subject.category,
            col(deal.unit) == unit,
            col(deal.settled_at) > at.timestamp - WINDOW_MS,
            col(deal.listing_id) != subject.listing_id,
            col(LogEntry.index) < at.log_size,
        )
        .order_by(col(deal.settled_at).desc(), col(deal.order_id))
        .limit(MAX_COMPARABLES)
    ).all()
    deals = [Deal(*row) for row in rows]
    return select_comparables(subject, unit, deals, at)


def listing_reference_price(
    session: Session, listing_id: str, principal: Principal | None
) -> dict[str, Any]:
    """The reference price of a listing ``principal`` may see (404 otherwise)."""
    at = as_of(session)
    row = load_visible(session, listing_id, principal)
    subject = Subject(
        listing_id=row.id,
        version=row.version,
        category=row.category,
        pricing=row.pricing,
        update_frequency=row.update_frequency,
        cost_basis=row.cost_basis,
    )
    unit = pricing_unit(subject.pricing)
    found = [] if unit is None else comparables(session, subject, unit[0], at)
    grades = grades_of(
        session,
        {(subject.listing_id, subject.version)} | {(d.listing_id, d.version) for d in found},
        at,
    )
    return reference_price(subject, found, at, grades)
