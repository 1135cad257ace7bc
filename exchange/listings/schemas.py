"""Payload schemas of the listing records. What the API answers (a listing, its
versions, the action answers, a page) is :mod:`ledger.protocol.listing`, which the
SDK parses.

Payloads are validated strictly (no coercion: ``"5"`` is not 5, floats never
pass; the record layer already refuses floats). Record types and payloads:

* ``listing.drafted`` / ``listing.edited``: ``{"listing_id": uuid, **ListingContent}``
  (the client picks the id, so the signed record names its resource)
* ``listing.submitted``, ``listing.review_started``, ``listing.published``:
  ``{"listing_id"}``
* ``listing.rejected``: ``{"listing_id", "reason"}``
* ``listing.delisted``: ``{"listing_id", "reason"}``
* ``listing.version_added``: ``{"listing_id", "version", "content_digest",
  "row_count", "byte_size", "format", "row_root", "computation"}``

``cost_basis`` (optional, ``null`` by default) is the version's declared costs for
the reference price's cost method (``ledger.pricing_reference.CostBasis``,
docs/pricing.md); a ``listing.version_added`` declares its own (``null``: none).

``computation`` (optional, ``null`` by default) is the version's computation offer:
``ledger.computation.offer.ComputationOffer`` JSON (docs/computations.md); it needs
provider custody (the provider's agent runs the queries).

``policy`` (optional, ``null`` by default) is the version's usage policy:
``ledger.protocol.policy.Policy`` JSON (docs/policies.md); ``null`` in a draft means
the default policy (any purpose, anywhere, no time limit, no onward transfer), in
``listing.version_added`` it keeps the current version's policy.

``custody`` says who holds the data (docs/custody.md): ``provider`` (the default:
the provider's agent keeps it and delivers each order end-to-end encrypted; the
exchange never sees plaintext) or ``exchange`` (the provider uploads it and the
exchange encrypts it at rest and can read it). ``row_root`` is the SM3 row-tree
root of the dataset (``clients.datasets.describe_file``): required in provider
custody, where buyers check the rows they receive against it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from ledger.protocol.listing import DEFAULT_DELIVERY_WINDOW_S

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
MIN_DELIVERY_WINDOW_S = 60
MAX_DELIVERY_WINDOW_S = 30 * 86_400

Custody = Literal["provider", "exchange"]


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
        "on the data without seeing it; null: none. Needs provider custody.",
    )
    policy: dict[str, Any] | None = Field(
        default=None,
        description="The usage policy (docs/policies.md: an ODRL subset, enforced on "
        "every order); null: the default policy.",
    )
    custody: Custody = Field(
        default="provider",
        description="Who holds the data: the provider's agent (default) or the exchange.",
    )
    row_root: HexDigest | None = Field(
        default=None,
        description="SM3 row-tree root of the dataset; required in provider custody.",
    )
    cost_basis: dict[str, Any] | None = Field(
        default=None,
        description="Declared costs for the cost method of the reference price "
        "(docs/pricing.md): integer fen acquisition_fen, processing_fen, storage_fen, "
        "compliance_fen, other_fen, expected_units and margin_bp; null: none.",
    )
    delivery_window_s: Annotated[
        StrictInt, Field(ge=MIN_DELIVERY_WINDOW_S, le=MAX_DELIVERY_WINDOW_S)
    ] = Field(
        default=DEFAULT_DELIVERY_WINDOW_S,
        description="Seconds the provider has to deliver a paid order before the exchange "
        "refunds it in full.",
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
    row_root: HexDigest | None = None
    cost_basis: dict[str, Any] | None = Field(
        default=None, description="The new version's declared costs (docs/pricing.md); null: none."
    )
    policy: dict[str, Any] | None = Field(
        default=None,
        description="The new version's usage policy; null: the current version's policy.",
    )
