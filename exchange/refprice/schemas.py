"""The JSON shape of ``GET /listings/{id}/reference-price`` (the dict
``ledger.pricing_reference.reference_price`` returns; no buyer anywhere)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AsOfPublic(BaseModel):
    log_size: int = Field(description="The answer covers the log's first log_size entries.")
    timestamp: int = Field(description="Promise time (ms) of the last of them: 'now'.")


class CostPublic(BaseModel):
    acquisition_fen: int
    processing_fen: int
    storage_fen: int
    compliance_fen: int
    other_fen: int
    expected_units: int
    margin_bp: int
    total_fen: int
    low: int = Field(description="ceil(total_fen / expected_units): break-even.")
    high: int = Field(description="ceil(total_fen × (10000 + margin_bp) / (units × 10000)).")


class Adjustments(BaseModel):
    quality_bp: int
    freshness_bp: int


class ComparablePublic(BaseModel):
    order_id: str
    listing_id: str
    unit_price_fen: int
    settled_at: int
    grade: str | None = Field(default=None, description="Quality grade A–D (null: none).")
    adjustments: Adjustments
    adjusted_unit_price_fen: int


class MarketMethod(BaseModel):
    window_ms: int
    since: int
    max_comparables: int
    min_comparables: int
    quantiles: list[int]
    quantile_method: str
    subject_grade: str | None = None


class MarketPublic(BaseModel):
    status: Literal["ok", "insufficient_comparables"]
    low: int | None = Field(default=None, description="25th percentile (null: insufficient).")
    median: int | None = None
    high: int | None = Field(default=None, description="75th percentile (null: insufficient).")
    comparables: list[ComparablePublic]
    method: MarketMethod


Position = Literal["below", "within", "above"]


class AskingPosition(BaseModel):
    market: Position | None = Field(default=None, description="Against the market range.")
    cost: Position | None = Field(default=None, description="Against the cost range.")


class AskingPublic(BaseModel):
    unit_price_fen: int
    position: AskingPosition


class ReferencePricePublic(BaseModel):
    listing_id: str
    version: int
    category: str
    unit: Literal["order", "1000_rows", "30_days"] | None = Field(
        default=None, description="The listing's pricing unit (null: its pricing has none)."
    )
    as_of: AsOfPublic
    cost: CostPublic | None = Field(
        default=None, description="The cost method (null: no cost basis declared)."
    )
    market: MarketPublic | None = Field(default=None, description="Null: no pricing unit.")
    asking: AskingPublic | None = Field(default=None, description="Null: no pricing unit.")
