"""The market method's comparables table: one row per settled deal.

A row is staged with the order's settlement (``exchange.orders.lifecycle``: in
the transaction of its ``settlement.paid`` record, the one write path) and
removed with an ``access.revoked`` of that order; it carries what
``ledger.pricing_reference.PublicRecords`` derives from the public records, so
the exchange never scans orders to price a listing: the index
``(category, unit, settled_at)`` finds the newest comparables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary
from sqlmodel import Field, SQLModel


class ReferenceDeal(SQLModel, table=True):
    __tablename__ = "reference_deal"
    __table_args__ = (Index("ix_reference_deal_market", "category", "unit", "settled_at"),)

    order_id: str = Field(primary_key=True, max_length=36)
    listing_id: str = Field(max_length=36)
    version: int
    category: str
    unit: str = Field(max_length=16)
    unit_price_fen: int = Field(sa_type=BigInteger)
    settled_at: int = Field(sa_type=BigInteger)
    """Timestamp (ms) of the ``settlement.paid`` record."""
    update_frequency: str = Field(max_length=16)
    settled_leaf_hash: bytes = Field(sa_type=LargeBinary)
    """Leaf hash of the ``settlement.paid`` record (its log entry gives ``as_of``)."""
