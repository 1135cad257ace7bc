"""Payloads and JSON shapes of quotes and orders.

Record ``order.placed`` (signed by the buyer): ``{"order_id": <new UUID>,
"quote": <exchange.quotes.Quote.to_dict()>}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from exchange.accounts.schemas import AccountPublic
from exchange.log.schemas import Appended
from exchange.pricing import MAX_PERIODS, MAX_ROWS

OrderId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


class TermsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rows: Annotated[StrictInt, Field(ge=1, le=MAX_ROWS)] | None = Field(
        default=None, description="Rows bought (tiered pricing only, required there)."
    )
    periods: Annotated[StrictInt, Field(ge=1, le=MAX_PERIODS)] | None = Field(
        default=None, description="Periods bought (subscription pricing only, required there)."
    )
    licence: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="The listing's licence (the default); no other is offered."
    )


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: TermsIn = Field(default_factory=TermsIn)


class QuoteIssued(BaseModel):
    quote: dict[str, Any] = Field(
        description="exchange.quotes.Quote.to_dict(): signed by the exchange's log key "
        "(SM2 over RFC 8785 with kind shancheng.quote.v1); present it in order.placed."
    )


class OrderPayload(BaseModel):
    """``order.placed``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: OrderId
    quote: dict[str, Any]


class OrderPublic(BaseModel):
    id: str
    buyer: str
    listing_id: str
    version: int = Field(description="The content version bought (fixed for the order).")
    content_digest: str
    quote_id: str
    terms: dict[str, Any]
    amount: int = Field(description="Price paid, fen.")
    escrow: int = Field(description="Fen of this order still in escrow.")
    state: str = Field(examples=["placed"])
    created_at: int
    updated_at: int
    acceptance_deadline: int | None
    access_expires_at: int | None
    placed_leaf_hash: str


class OrderPlaced(BaseModel):
    order: OrderPublic
    account: AccountPublic = Field(description="The buyer's balances after the hold.")
    log: Appended


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_offset: int | None
