"""Order tables.

An :class:`Order` fixes what was bought (listing, ``version``,
``content_digest``, ``terms``) and for how much; later content versions never
change it. Its money is in escrow (``escrow``, fen, part of the buyer's held
balance) until settlement or refund. States (``OrderState``)::

    placed (paid, escrow held) ─► delivered ─► accepted ─► settled
                                      │
                                      └──────► disputed ─► settled | refunded

``acceptance_deadline`` is set at delivery (auto-accept after it);
``access_expires_at`` is the end of a subscription's paid period (set at
placement: ``created_at + periods × period_days``), ``None`` for one-off sales.
``delivered_at`` is when the first envelope was issued. ``revoked_at`` /
``revocation_reason`` are set when a provider revokes the buyer's access
(downloads refused from then on; the unused part is refunded).
``renews_order_id`` names the order a subscription renewal extends (its paid
period starts where that order's ends, or now if that has passed).
``queries_left`` / ``epsilon_left`` (micro-ε) are a computation order's
allowance (``None``: not limited that way, or not a computation order); they only
decrease by a conditional ``UPDATE`` when a query is reserved (and come back when
the provider refuses it): never below zero (exchange.computations).
``custody`` is the listing's at placement (``provider`` or ``exchange``);
``delivery_deadline`` is when a still undelivered (placed) order is refunded in
full (``created_at + delivery_window_s``; ``delivery.overdue``).
:class:`OrderDelivery` lists every ``delivery.issued`` record of an order (the
latest one is what ``GET /orders/{id}/delivery`` shows).
``declaration`` is the buyer's signed declaration of use (purpose, processing
region, legal basis) and ``policy_digest`` the SM3 of the usage policy it was
checked against (exchange.policies); ``use_until`` ends access when the policy
limits the days of use (``None``: no limit).
``row_version`` is the optimistic lock of later transitions (``exchange.records``).

:class:`OfferSeats` counts the sales of a limited offer (``seats`` /
``exclusive`` pricing) per listing version; a sale increments ``sold`` with a
conditional UPDATE (``WHERE sold < limit``) in the order's transaction.
:class:`UsedQuote` makes a quote single-use (primary key, conditional insert).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Integer
from sqlmodel import Field, SQLModel


class OrderState(StrEnum):
    PLACED = "placed"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    DISPUTED = "disputed"
    SETTLED = "settled"
    REFUNDED = "refunded"


_order_row_version = Column("row_version", Integer, nullable=False)


class Order(SQLModel, table=True):
    __tablename__ = "orders"  # "order" is an SQL keyword
    __mapper_args__ = {"version_id_col": _order_row_version}
    __table_args__ = (
        CheckConstraint("amount >= 0", name="orders_amount_not_negative"),
        CheckConstraint("escrow >= 0 AND escrow <= amount", name="orders_escrow_in_range"),
    )

    id: str = Field(primary_key=True, max_length=36)
    buyer_key_id: str = Field(index=True, max_length=64)
    listing_id: str = Field(index=True, max_length=36)
    version: int
    content_digest: str = Field(max_length=64)
    quote_id: str = Field(unique=True, max_length=32)
    terms: dict[str, Any] = Field(sa_type=JSON)
    amount: int = Field(sa_type=BigInteger)
    escrow: int = Field(sa_type=BigInteger)
    """Fen of this order still held in the buyer's escrow."""
    state: str = Field(index=True, max_length=16)
    created_at: int = Field(sa_type=BigInteger)
    updated_at: int = Field(sa_type=BigInteger)
    acceptance_deadline: int | None = Field(default=None, sa_type=BigInteger)
    access_expires_at: int | None = Field(default=None, sa_type=BigInteger)
    placed_leaf_hash: str = Field(max_length=64)
    """Hex leaf hash of the buyer's ``order.placed`` record."""
    delivered_at: int | None = Field(default=None, sa_type=BigInteger)
    revoked_at: int | None = Field(default=None, sa_type=BigInteger)
    revocation_reason: str | None = Field(default=None, max_length=500)
    renews_order_id: str | None = Field(default=None, index=True, max_length=36)
    queries_left: int | None = Field(default=None, sa_type=BigInteger)
    epsilon_left: int | None = Field(default=None, sa_type=BigInteger)
    custody: str = Field(default="exchange", max_length=16)
    delivery_deadline: int | None = Field(default=None, index=True, sa_type=BigInteger)
    declaration: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    policy_digest: str | None = Field(default=None, max_length=64)
    use_until: int | None = Field(default=None, sa_type=BigInteger)
    row_version: int = Field(default=1, sa_column=_order_row_version)


class OfferSeats(SQLModel, table=True):
    __tablename__ = "offer_seats"
    __table_args__ = (CheckConstraint("sold >= 0", name="offer_seats_sold_not_negative"),)

    listing_id: str = Field(primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    sold: int = 0


class UsedQuote(SQLModel, table=True):
    __tablename__ = "used_quote"

    quote_id: str = Field(primary_key=True, max_length=32)
    order_id: str = Field(max_length=36)


class OrderDelivery(SQLModel, table=True):
    """One ``delivery.issued`` record of an order (append-only: re-issued envelopes
    add rows; the order row itself does not change)."""

    __tablename__ = "order_delivery"

    leaf_hash: str = Field(primary_key=True, max_length=64)
    """Hex leaf hash of the record (its log entry)."""
    order_id: str = Field(index=True, max_length=36)
