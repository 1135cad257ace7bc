"""Payloads and JSON shapes of quotes and orders.

Record ``order.placed`` (signed by the buyer): ``{"order_id": <new UUID>,
"quote": <exchange.quotes.Quote.to_dict()>, "declaration": {"purpose",
"processing_region", "legal_basis"}, "renews": <order id>}`` (``renews`` optional:
a subscription renewal; ``declaration``: ledger.protocol.policy.Declaration, checked
against the listing version's usage policy, whose digest the quote carries).
The lifecycle records (exchange.orders.lifecycle):
``order.accepted`` ``{order_id}`` and ``order.disputed`` ``{order_id, reason,
evidence?}`` (buyer), ``dispute.resolved`` ``{order_id, outcome, note}`` (operator),
``access.revoked`` ``{order_id, reason}`` (provider), and the exchange's own
``order.auto_accepted`` ``{order_id, acceptance_deadline}`` and
``settlement.paid`` ``{order_id, amount, platform_fee, payouts, remainder_rule}``
and ``delivery.overdue`` ``{order_id, delivery_deadline, refund}``; and the
provider's ``delivery.issued`` (``ledger.protocol.delivery.ProviderDelivery``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from exchange.accounts.schemas import AccountPublic
from exchange.pricing import MAX_PERIODS, MAX_QUERIES, MAX_ROWS
from ledger.protocol.log import Appended
from ledger.records import canonical_json

OrderId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


class TermsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rows: Annotated[StrictInt, Field(ge=1, le=MAX_ROWS)] | None = Field(
        default=None, description="Rows bought (tiered pricing only, required there)."
    )
    row_offset: Annotated[StrictInt, Field(ge=0, le=MAX_ROWS)] | None = Field(
        default=None,
        description="The first row bought (0-based; only with rows, default 0): the order "
        "buys rows [row_offset, row_offset + rows) of the version.",
    )
    periods: Annotated[StrictInt, Field(ge=1, le=MAX_PERIODS)] | None = Field(
        default=None, description="Periods bought (subscription pricing only, required there)."
    )
    licence: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="The listing's licence (the default); no other is offered."
    )
    computation: Literal[True] | None = Field(
        default=None,
        description="Buy queries on the data (the listing's computation offer) "
        "instead of the data.",
    )
    queries: Annotated[StrictInt, Field(ge=1, le=MAX_QUERIES)] | None = Field(
        default=None,
        description="Queries bought (computation offers priced per query, required there).",
    )
    purpose: Literal["assessment"] | None = Field(
        default=None,
        description="assessment: an assessor's order of the whole version at 0 fen, to "
        "recompute its quality report (docs/quality.md); assessors order nothing else.",
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
    declaration: dict[str, Any] = Field(
        description="The buyer's declaration of use: {purpose, processing_region (ISO "
        "3166-1 alpha-2), legal_basis (PIPL Art. 13; required for personal information)}; "
        "checked against the listing's usage policy (docs/policies.md)."
    )
    renews: OrderId | None = Field(
        default=None,
        description="The buyer's subscription order this one renews: its paid period "
        "starts where that one's ends (or now, if that has passed).",
    )


Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
MAX_EVIDENCE_BYTES = 16 * 1024


class OrderRefPayload(BaseModel):
    """``order.accepted`` (buyer)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: OrderId


class DisputePayload(BaseModel):
    """``order.disputed`` (buyer): the escrow stays frozen until an operator resolves.
    ``evidence``: what the buyer's checks found (e.g. ``{"check": "range_proof",
    "expected": ..., "actual": ...}``), at most 16 KiB of canonical JSON."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: OrderId
    reason: Reason
    evidence: dict[str, Any] | None = None

    @field_validator("evidence")
    @classmethod
    def _small_evidence(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(canonical_json(value)) > MAX_EVIDENCE_BYTES:
            raise ValueError(f"at most {MAX_EVIDENCE_BYTES} bytes of canonical JSON")
        return value


class ResolvePayload(BaseModel):
    """``dispute.resolved`` (operator): ``refund`` the escrow to the buyer or
    ``release`` it to the providers (settlement)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: OrderId
    outcome: Literal["refund", "release"]
    note: Reason


class RevokePayload(BaseModel):
    """``access.revoked`` (a provider of the order's listing)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    order_id: OrderId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class SettlementPublic(BaseModel):
    amount: int = Field(description="Fen settled (the escrow released).")
    platform_fee: int = Field(description="Fen to the platform: floor(amount × fee_bp / 10000).")
    payouts: dict[str, int] = Field(
        description="Fen per provider key id (largest-remainder split of amount − fee)."
    )


class SettlementPaid(SettlementPublic):
    remainder_rule: str = Field(
        description="How the fractions of a fen were given out (docs/money.md).",
        examples=["largest_remainder"],
    )
    log: Appended = Field(description="The exchange-signed settlement.paid record.")


class RefundPublic(BaseModel):
    amount: int = Field(description="Fen returned to the buyer in all.")
    from_escrow: int = Field(description="Part of it that was still in escrow.")
    clawbacks: dict[str, int] = Field(
        description="Part of it taken back from the payees of a settled order "
        '(provider key ids, "platform" for the fee).'
    )


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
    rows: int | None = Field(default=None, description="Rows bought (quantity orders).")
    row_offset: int | None = Field(
        default=None, description="The first row bought (quantity orders; else null)."
    )
    custody: str = Field(
        examples=["provider"], description="Who delivers: the provider's agent or the exchange."
    )
    delivery_deadline: int | None = Field(
        default=None,
        description="While placed: when the order is refunded in full unless delivered (ms).",
    )
    delivered_at: int | None = Field(default=None, description="First delivery (ms).")
    revoked_at: int | None = Field(default=None, description="Access revoked (ms).")
    revocation_reason: str | None = None
    renews_order_id: str | None = Field(
        default=None, description="The subscription order this one renews."
    )
    queries_left: int | None = Field(
        default=None, description="Computation orders priced per query: queries left."
    )
    epsilon_left: str | None = Field(
        default=None,
        description="Computation orders with differential privacy: ε left (decimal string).",
    )
    settlement: SettlementPublic | None = Field(
        default=None, description="The settlement's breakdown, once settled."
    )
    declaration: dict[str, Any] | None = Field(
        default=None, description="The buyer's signed declaration of use (purpose, region)."
    )
    policy_digest: str | None = Field(
        default=None, description="SM3 of the usage policy the order agreed to."
    )
    use_until: int | None = Field(
        default=None, description="When the policy's days of use end (ms; null: no limit)."
    )


class OrderPlaced(BaseModel):
    order: OrderPublic
    account: AccountPublic = Field(description="The buyer's balances after the hold.")
    log: Appended


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_offset: int | None


class OrderChanged(BaseModel):
    """An order after a lifecycle action (accept, dispute, resolve, revoke)."""

    order: OrderPublic
    log: Appended = Field(description="The record of the action.")
    settlement: SettlementPaid | None = Field(
        default=None, description="When the action settled the order."
    )
    refund: RefundPublic | None = Field(
        default=None, description="When the action returned money to the buyer."
    )
