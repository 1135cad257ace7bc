"""Payload schemas of the listing records and the API's JSON shapes.

Payloads are validated strictly (no coercion: ``"5"`` is not 5, floats never
pass; the record layer already refuses floats). Record types and payloads:

* ``listing.drafted`` / ``listing.edited``: ``{"listing_id": uuid, **ListingContent}``
  (the client picks the id, so the signed record names its resource)
* ``listing.submitted``, ``listing.review_started``, ``listing.published``:
  ``{"listing_id"}``
* ``listing.rejected``: ``{"listing_id", "reason"}``
* ``listing.delisted``: ``{"listing_id", "reason"}``
* ``listing.version_added``: ``{"listing_id", "version", "content_digest",
  "row_count", "byte_size", "format", "computation"}``

``computation`` (optional, ``null`` by default) is the version's computation offer:
``ledger.computation.offer.ComputationOffer`` JSON (docs/computations.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from exchange.log.schemas import Appended

ListingId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
HexDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Count = Annotated[StrictInt, Field(ge=0, le=2**53 - 1)]

Classification = Literal["一般", "重要", "核心"]
ColumnType = Literal[
    "string", "integer", "decimal", "boolean", "date", "datetime", "binary", "json"
]
Format = Literal["csv", "tsv", "jsonl", "json", "parquet", "xlsx", "other"]
UpdateFrequency = Literal[
    "once", "realtime", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly"
]
SampleValue = str | StrictInt | StrictBool | None

MAX_SAMPLE_ROWS = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ProviderShare(_Strict):
    key_id: KeyId
    share_bps: Annotated[StrictInt, Field(ge=1, le=10_000)] = Field(
        description="Revenue share in basis points; the shares sum to 10,000."
    )


class ColumnSpec(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    type: ColumnType


class Declarations(_Strict):
    """Compliance declarations the review checks; all required to publish."""

    classification: Classification | None = Field(
        default=None, description="一般 or 重要; 核心 (core) data can never be listed."
    )
    personal_information: StrictBool | None = None
    pi_legal_basis: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="Required when personal_information is true."
    )
    source_legality: Annotated[str, StringConstraints(max_length=5000)] | None = None
    permitted_purposes: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = (
        Field(default_factory=list, max_length=50)
    )


class ListingContent(_Strict):
    title: ShortText
    description: LongText = ""
    category: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=32
    )
    providers: list[ProviderShare] = Field(min_length=1, max_length=20)
    columns: list[ColumnSpec] = Field(min_length=1, max_length=500)
    sample_rows: list[dict[str, SampleValue]] = Field(default_factory=list)
    row_count: Count
    byte_size: Count
    content_digest: HexDigest = Field(description="Hex SM3 of the dataset's bytes.")
    format: Format
    update_frequency: UpdateFrequency
    licence: Annotated[str, StringConstraints(max_length=2000)] | None = None
    usage_terms: LongText = ""
    pricing: dict[str, Any] = Field(description="See exchange.pricing (integer fen).")
    declarations: Declarations = Field(default_factory=Declarations)
    computation: dict[str, Any] | None = Field(
        default=None,
        description="A computation offer (docs/computations.md): what buyers may compute "
        "on the data without seeing it; null: none.",
    )


class DraftPayload(ListingContent):
    """``listing.drafted`` and ``listing.edited``."""

    listing_id: ListingId


class TargetPayload(_Strict):
    """``listing.submitted``, ``listing.review_started``, ``listing.published``."""

    listing_id: ListingId


class ReasonPayload(_Strict):
    """``listing.rejected``, ``listing.delisted``."""

    listing_id: ListingId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=5000)]


class VersionPayload(_Strict):
    """``listing.version_added``: the next version's content."""

    listing_id: ListingId
    version: Annotated[StrictInt, Field(ge=2, le=1_000_000)]
    content_digest: HexDigest
    row_count: Count
    byte_size: Count
    format: Format
    computation: dict[str, Any] | None = Field(
        default=None, description="The new version's computation offer; null: none."
    )


class ListingVersionPublic(BaseModel):
    version: int
    content_digest: str
    row_count: int
    byte_size: int
    format: str
    computation: dict[str, Any] | None = Field(
        default=None, description="The version's computation offer (null: none)."
    )
    created_at: int
    log_leaf_hash: str


class ListingPublic(BaseModel):
    id: str
    state: str = Field(examples=["published"])
    owner: str = Field(description="Key id of the provider that drafted it.")
    title: str
    description: str
    category: str
    tags: list[str]
    providers: list[dict[str, Any]]
    columns: list[dict[str, Any]]
    sample_rows: list[dict[str, Any]]
    row_count: int
    byte_size: int
    content_digest: str
    format: str
    update_frequency: str
    version: int
    licence: str | None
    usage_terms: str
    pricing: dict[str, Any]
    declarations: dict[str, Any]
    computation: dict[str, Any] | None = Field(
        default=None, description="The current version's computation offer (null: none)."
    )
    rejection_reason: str | None
    delisting_reason: str | None
    created_at: int
    updated_at: int
    published_at: int | None


class ListingChanged(BaseModel):
    listing: ListingPublic
    log: Appended


class VersionAdded(BaseModel):
    listing: ListingPublic
    version: ListingVersionPublic
    log: Appended


class ListingPage(BaseModel):
    items: list[ListingPublic]
    next_offset: int | None
