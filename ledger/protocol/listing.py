"""A listing as the exchange shows it, defined once: the exchange serves these classes
(``GET /listings/{id}``, ``GET /listings``, every listing action) and the SDK parses
them.

- :class:`Listing`: a listing (``state``: draft, submitted, under_review,
  published, rejected, delisted); ``version``/``content_digest``/``row_root`` are
  the current content's.
- :class:`ListingVersion`: one content version, as committed by its
  ``listing.drafted`` or ``listing.version_added`` record (leaf hash
  ``log_leaf_hash``).
- :class:`ProviderShare`, :class:`Column`: a listing's revenue shares and schema.
- :class:`ListingChanged`, :class:`VersionAdded`: the answers of the listing
  actions (with the :class:`~ledger.protocol.log.Appended` of their record).
- :class:`ListingPage`: a page of listings, newest first.

Fields hold the wire form: ``policy`` and ``computation`` are the JSON of a
:class:`~ledger.protocol.policy.Policy` and a
:class:`~ledger.computation.offer.ComputationOffer`, checked on parsing, which
:attr:`Listing.usage_policy` and :attr:`Listing.computation_offer` give.
``from_dict`` is strict about every field it reads and ignores fields it does
not know. Field descriptions sit in the fields' ``metadata`` (pydantic reads
them into the OpenAPI document); no class docstrings, which would become schema
descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Self

from ledger.computation.offer import ComputationOffer
from ledger.protocol.log import Appended
from ledger.protocol.policy import DEFAULT_POLICY, Policy
from ledger.protocol.quality import QualitySummary
from ledger.protocol.reader import JSONObject

__all__ = [
    "DEFAULT_DELIVERY_WINDOW_S",
    "Column",
    "Listing",
    "ListingChanged",
    "ListingPage",
    "ListingVersion",
    "ProviderShare",
    "VersionAdded",
    "checked_offer",
]

DEFAULT_DELIVERY_WINDOW_S: Final = 86_400
"""Seconds a provider has to deliver a paid order unless its listing says otherwise."""


def checked_offer(o: JSONObject) -> dict[str, Any] | None:
    """The ``computation`` offer's JSON, checked to be one (``None``: none)."""
    if not o.has("computation"):
        return None
    ComputationOffer.from_dict(o.raw("computation"), o.path("computation"))
    return o.mapping("computation")


def _policy(o: JSONObject) -> dict[str, Any] | None:
    """The ``policy``'s JSON, checked to be one (``None``: absent or null)."""
    if not o.has("policy"):
        return None
    Policy.from_dict(o.raw("policy"), o.path("policy"))
    return o.mapping("policy")


def _object(item: Any, where: str) -> dict[str, Any]:
    return JSONObject(item, where).data


@dataclass(frozen=True, slots=True)
class ProviderShare:
    key_id: str
    share_bps: int = field(
        metadata={"description": "Revenue share in basis points; the shares sum to 10,000."}
    )

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ProviderShare:
        o = JSONObject(data, where)
        return cls(o.hex64("key_id"), o.integer("share_bps"))

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "share_bps": self.share_bps}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Column:
        o = JSONObject(data, where)
        return cls(o.text("name"), o.text("type"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True, slots=True, kw_only=True)
class ListingVersion:
    version: int
    content_digest: str
    row_count: int
    byte_size: int
    format: str
    computation: dict[str, Any] | None = field(
        default=None, metadata={"description": "The version's computation offer (null: none)."}
    )
    row_root: str | None = field(
        default=None, metadata={"description": "SM3 row-tree root of the version."}
    )
    policy: dict[str, Any] | None = field(
        default=None,
        metadata={"description": "The version's usage policy (null: the default policy)."},
    )
    created_at: int
    log_leaf_hash: str

    @property
    def computation_offer(self) -> ComputationOffer | None:
        """The computation offer the provider signed for this version (``None``: none)."""
        return None if self.computation is None else ComputationOffer.from_dict(self.computation)

    @property
    def usage_policy(self) -> Policy:
        """The version's usage policy (docs/policies.md)."""
        return DEFAULT_POLICY if self.policy is None else Policy.from_dict(self.policy)

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ListingVersion:
        o = JSONObject(data, where)
        return cls(
            version=o.integer("version", minimum=1),
            content_digest=o.hex64("content_digest"),
            row_count=o.integer("row_count"),
            byte_size=o.integer("byte_size"),
            format=o.text("format"),
            computation=checked_offer(o),
            row_root=o.opt_hex64("row_root"),
            policy=_policy(o),
            created_at=o.integer("created_at"),
            log_leaf_hash=o.hex64("log_leaf_hash"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    id: str
    state: str = field(metadata={"examples": ["published"]})
    owner: str = field(metadata={"description": "Key id of the provider that drafted it."})
    title: str
    description: str
    category: str
    tags: tuple[str, ...]
    providers: tuple[ProviderShare, ...]
    columns: tuple[Column, ...]
    sample_rows: tuple[dict[str, Any], ...]
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
    computation: dict[str, Any] | None = field(
        default=None,
        metadata={"description": "The current version's computation offer (null: none)."},
    )
    custody: str = field(
        metadata={
            "examples": ["provider"],
            "description": "provider: only the provider can read the data.",
        }
    )
    delivery_window_s: int
    cost_basis: dict[str, Any] | None = field(
        default=None,
        metadata={"description": "The current version's declared costs (docs/pricing.md)."},
    )
    row_root: str | None = field(metadata={"description": "Row-tree root of the current version."})
    quality: QualitySummary | None = field(
        default=None,
        metadata={
            "description": "The current version's quality report: grade, digest, signer and "
            "countersigning assessors (docs/quality.md); null: none."
        },
    )
    policy: dict[str, Any] = field(
        metadata={
            "description": "The current version's usage policy (the default one when none "
            "was given; docs/policies.md)."
        }
    )
    policy_digest: str = field(
        metadata={
            "description": "Hex SM3 of the policy's RFC 8785 form: what quotes and orders name."
        }
    )
    rejection_reason: str | None
    delisting_reason: str | None
    created_at: int
    updated_at: int
    published_at: int | None
    certificate: str | None = field(
        default=None,
        metadata={
            "description": "Number of the registration certificate of the current version "
            "(GET /certificates/{number}); null before publication."
        },
    )

    @property
    def computation_offer(self) -> ComputationOffer | None:
        """The current version's computation offer (``None``: none)."""
        return None if self.computation is None else ComputationOffer.from_dict(self.computation)

    @property
    def usage_policy(self) -> Policy:
        """The current version's usage policy (every order is checked against it)."""
        return Policy.from_dict(self.policy)

    def provider_keys(self) -> frozenset[str]:
        """Key ids of the listing's providers (the owner and its co-providers)."""
        return frozenset({self.owner, *(p.key_id for p in self.providers)})

    def content_fields(self) -> dict[str, Any]:
        """The listing's editable content as the API takes it (``listing.edited``
        replaces the whole content): change what you need and send it back."""
        return {
            "title": self.title,
            "description": self.description,
            "category": self.category,
            "tags": list(self.tags),
            "providers": [p.to_dict() for p in self.providers],
            "columns": [c.to_dict() for c in self.columns],
            "sample_rows": [dict(r) for r in self.sample_rows],
            "row_count": self.row_count,
            "byte_size": self.byte_size,
            "content_digest": self.content_digest,
            "format": self.format,
            "update_frequency": self.update_frequency,
            "licence": self.licence,
            "usage_terms": self.usage_terms,
            "pricing": dict(self.pricing),
            "declarations": dict(self.declarations),
            "custody": self.custody,
            "row_root": self.row_root,
            "computation": None if self.computation is None else dict(self.computation),
            **({} if self.cost_basis is None else {"cost_basis": dict(self.cost_basis)}),
            "policy": dict(self.policy),
            "delivery_window_s": self.delivery_window_s,
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Self:
        """Parse a listing. Absent, as from an older exchange: ``custody`` is
        ``exchange``, ``delivery_window_s`` :data:`DEFAULT_DELIVERY_WINDOW_S`,
        ``policy`` the default policy (``policy_digest`` its digest)."""
        o = JSONObject(data, path)
        policy = _policy(o)
        if policy is None:
            policy = DEFAULT_POLICY.to_dict()
        delivery_window_s = o.opt_integer("delivery_window_s")
        return cls(
            id=o.text("id"),
            state=o.text("state"),
            owner=o.hex64("owner"),
            title=o.text("title"),
            description=o.text("description"),
            category=o.text("category"),
            tags=o.strings("tags"),
            providers=o.items("providers", ProviderShare.from_dict),
            columns=o.items("columns", Column.from_dict),
            sample_rows=o.items("sample_rows", _object),
            row_count=o.integer("row_count"),
            byte_size=o.integer("byte_size"),
            content_digest=o.hex64("content_digest"),
            format=o.text("format"),
            update_frequency=o.text("update_frequency"),
            version=o.integer("version", minimum=1),
            licence=o.opt_text("licence"),
            usage_terms=o.text("usage_terms"),
            pricing=o.mapping("pricing"),
            declarations=o.mapping("declarations"),
            computation=checked_offer(o),
            custody=o.opt_text("custody") or "exchange",
            delivery_window_s=DEFAULT_DELIVERY_WINDOW_S
            if delivery_window_s is None
            else delivery_window_s,
            cost_basis=o.mapping("cost_basis") if o.has("cost_basis") else None,
            row_root=o.opt_hex64("row_root"),
            quality=QualitySummary.from_dict(o.raw("quality"), o.path("quality"))
            if o.has("quality")
            else None,
            policy=policy,
            policy_digest=o.opt_hex64("policy_digest") or Policy.from_dict(policy).digest(),
            rejection_reason=o.opt_text("rejection_reason"),
            delisting_reason=o.opt_text("delisting_reason"),
            created_at=o.integer("created_at"),
            updated_at=o.integer("updated_at"),
            published_at=o.opt_integer("published_at"),
            certificate=o.opt_text("certificate"),
        )


@dataclass(frozen=True, slots=True)
class ListingChanged:
    listing: Listing
    log: Appended


@dataclass(frozen=True, slots=True)
class VersionAdded:
    listing: Listing
    version: ListingVersion
    log: Appended


@dataclass(frozen=True, slots=True)
class ListingPage:
    items: tuple[Listing, ...]
    next_offset: int | None

    @classmethod
    def from_dict(cls, data: Any) -> ListingPage:
        o = JSONObject(data, "")
        return cls(
            items=o.items("items", lambda item, where: Listing.from_dict(item, path=where)),
            next_offset=o.opt_integer("next_offset"),
        )
