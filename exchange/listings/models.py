"""Listing tables: the listing, its providers (revenue shares) and its content versions."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer
from sqlmodel import Field, SQLModel


class ListingState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    PUBLISHED = "published"
    REJECTED = "rejected"
    DELISTED = "delisted"


_listing_row_version = Column("row_version", Integer, nullable=False)


class Listing(SQLModel, table=True):
    """A data product. Content fields describe its current version (``version``);
    every version's digest is in :class:`ListingVersion`. ``row_version`` is the
    optimistic lock (see ``exchange.records``)."""

    __tablename__ = "listing"
    __mapper_args__ = {"version_id_col": _listing_row_version}

    id: str = Field(primary_key=True, max_length=36)
    owner_key_id: str = Field(index=True, max_length=64)
    """The provider that drafted it (co-providers are in ``listing_provider``)."""
    state: str = Field(index=True, max_length=16)
    title: str
    description: str
    category: str = Field(index=True)
    tags: list[str] = Field(sa_type=JSON)
    columns: list[dict[str, Any]] = Field(sa_type=JSON)
    sample_rows: list[dict[str, Any]] = Field(sa_type=JSON)
    row_count: int = Field(sa_type=BigInteger)
    byte_size: int = Field(sa_type=BigInteger)
    content_digest: str = Field(max_length=64)
    format: str
    update_frequency: str
    version: int
    licence: str | None = None
    usage_terms: str
    pricing: dict[str, Any] = Field(sa_type=JSON)
    classification: str | None = None
    personal_information: bool | None = None
    pi_legal_basis: str | None = None
    source_legality: str | None = None
    permitted_purposes: list[str] = Field(sa_type=JSON)
    rejection_reason: str | None = None
    delisting_reason: str | None = None
    created_at: int = Field(sa_type=BigInteger)
    updated_at: int = Field(sa_type=BigInteger)
    published_at: int | None = Field(default=None, sa_type=BigInteger)
    computation: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """The current version's computation offer (``ComputationOffer.to_dict()``), if any."""
    custody: str = Field(default="provider", max_length=16)
    """``provider`` (the provider's agent holds the data) or ``exchange``."""
    cost_basis: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """The current version's declared costs (``ledger.pricing_reference.CostBasis``)."""
    delivery_window_s: int = Field(default=86_400)
    """Seconds a paid order may wait for its delivery before it is refunded."""
    policy: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """The current version's usage policy (``Policy.to_dict()``; null: the default)."""
    row_version: int = Field(default=1, sa_column=_listing_row_version)


class ListingProvider(SQLModel, table=True):
    """A provider of a listing and its revenue share in basis points (sum 10,000)."""

    __tablename__ = "listing_provider"

    listing_id: str = Field(primary_key=True, foreign_key="listing.id", max_length=36)
    provider_key_id: str = Field(primary_key=True, index=True, max_length=64)
    share_bps: int
    position: int


class ListingVersion(SQLModel, table=True):
    """One content version: orders reference the version they bought."""

    __tablename__ = "listing_version"

    listing_id: str = Field(primary_key=True, foreign_key="listing.id", max_length=36)
    version: int = Field(primary_key=True)
    content_digest: str = Field(max_length=64)
    row_count: int = Field(sa_type=BigInteger)
    byte_size: int = Field(sa_type=BigInteger)
    format: str
    computation: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """The computation offer the provider signed for this version, if any."""
    row_root: str | None = Field(default=None, max_length=64)
    """SM3 row-tree root (hex) the provider signed for this version."""
    policy: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    """The version's usage policy (ledger.protocol.policy; null: the default policy)."""
    created_at: int = Field(sa_type=BigInteger)
    log_leaf_hash: str = Field(max_length=64)
    """Leaf hash (hex) of the record that declared the version."""
