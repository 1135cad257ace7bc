"""Typed answers of the marketplace API (participants, listings, search, quotes,
orders, accounts, delivery): frozen dataclasses with ``from_dict``.

Parsing is strict about what the SDK relies on (a missing field or a wrong
type raises :class:`ledger.records.RecordFormatError`, which the client turns
into :class:`clients.sdk.errors.ResponseFormatError`) and ignores fields it
does not know, so a server that adds a field does not break older clients.
The quote is the exception: :class:`ledger.protocol.quote.Quote`, shared with
the exchange, refuses unknown fields, since they would change its signed bytes.
Money is integer fen everywhere; times are milliseconds since the epoch.

Every model a writing call returns carries ``log``: the :class:`Appended`
(index, leaf hash, promise) of the signed record behind the change, already
checked by the client against the log key (and, for a record the client
signed, against that record's leaf hash). Reads leave ``log`` as ``None``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clients.sdk.models import Appended
from ledger.computation.offer import ComputationOffer
from ledger.errors import KeyFormatError
from ledger.protocol.accounts import PLATFORM_ACCOUNT, Balance
from ledger.protocol.delivery import ProviderDelivery, RowRange
from ledger.protocol.policy import DEFAULT_POLICY, Declaration, Policy
from ledger.protocol.quote import QUOTE_KIND, Quote
from ledger.protocol.reader import JSONObject
from ledger.records import (
    MAX_SAFE_INTEGER,
    RecordFormatError,
    SignedRecord,
    thaw,
)
from ledger.sm2 import SM2PublicKey

__all__ = [
    "PLATFORM_ACCOUNT",
    "QUOTE_KIND",
    "Account",
    "Balance",
    "Column",
    "ContentUploaded",
    "CrossBorderAssessment",
    "DecryptedFile",
    "DeliverableUploaded",
    "Delivery",
    "DeliveryEnvelope",
    "FacetCount",
    "Facets",
    "Listing",
    "ListingVersion",
    "Movement",
    "Order",
    "OrderPage",
    "Participant",
    "ProviderShare",
    "Quote",
    "Received",
    "Refund",
    "SearchHit",
    "SearchPage",
    "Settlement",
]


class _Obj(JSONObject):
    """The shared reader, and the ``log`` block writing answers carry."""

    __slots__ = ()

    def log(self, key: str = "log") -> Appended | None:
        return Appended.from_dict(self.data[key], path=self.path(key)) if self.has(key) else None

    def opt_hex64(self, key: str) -> str | None:
        return self.hex64(key) if self.has(key) else None


def _offer(o: _Obj) -> ComputationOffer | None:
    """The ``computation`` offer of a listing or version (strictly parsed)."""
    if not o.has("computation"):
        return None
    return ComputationOffer.from_dict(o.raw("computation"), o.path("computation"))


def _policy(o: _Obj) -> Policy:
    """The ``policy`` of a listing or version (strictly parsed; absent: the default)."""
    if not o.has("policy"):
        return DEFAULT_POLICY
    return Policy.from_dict(o.raw("policy"), o.path("policy"))


def _objects(item: Any, where: str) -> dict[str, Any]:
    return _Obj(item, where).data


# --------------------------------------------------------------------------- participants


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant's public profile; ``status`` is ``unverified``, ``active`` or
    ``suspended``. ``public_key`` is checked to be the key of ``key_id``."""

    key_id: str
    display_name: str
    role: str
    status: str
    public_key: SM2PublicKey
    registered_at: int | None
    log: Appended | None = None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "", log: Appended | None = None) -> Participant:
        o = _Obj(data, path)
        key_id = o.hex64("key_id")
        try:
            public_key = SM2PublicKey.from_pem(o.text("public_key"))
        except KeyFormatError as exc:
            raise RecordFormatError(
                f"not an SM2 public key: {exc}", path=o.path("public_key")
            ) from None
        if public_key.key_id() != key_id:
            raise RecordFormatError(
                "the public key is not the key of key_id", path=o.path("key_id")
            )
        return cls(
            key_id=key_id,
            display_name=o.text("display_name"),
            role=o.text("role"),
            status=o.text("status"),
            public_key=public_key,
            registered_at=o.opt_integer("registered_at"),
            log=log,
        )

    @classmethod
    def from_changed(cls, data: Any) -> Participant:
        """``{"participant": …, "log": …}`` (a registration, approval, suspension)."""
        o = _Obj(data, "")
        return cls.from_dict(o.raw("participant"), path="participant", log=_required_log(o))


def _required_log(o: _Obj) -> Appended:
    log = o.log()
    if log is None:
        raise RecordFormatError("missing field", path=o.path("log"))
    return log


# --------------------------------------------------------------------------- listings


@dataclass(frozen=True, slots=True)
class ProviderShare:
    key_id: str
    share_bps: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ProviderShare:
        o = _Obj(data, where)
        return cls(o.hex64("key_id"), o.integer("share_bps"))

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "share_bps": self.share_bps}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Column:
        o = _Obj(data, where)
        return cls(o.text("name"), o.text("type"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True, slots=True)
class ListingVersion:
    """One content version of a listing, as committed by its ``listing.version_added``
    (or ``listing.drafted``) record, whose leaf hash is ``log_leaf_hash``.
    ``row_root`` is the SM3 root over its rows (``None`` when none was declared)."""

    version: int
    content_digest: str
    row_count: int
    byte_size: int
    format: str
    created_at: int
    log_leaf_hash: str
    row_root: str | None = None
    computation: ComputationOffer | None = None
    """The computation offer the provider signed for this version (``None``: none)."""
    policy: Policy = DEFAULT_POLICY
    """The version's usage policy (docs/policies.md)."""

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ListingVersion:
        o = _Obj(data, where)
        return cls(
            version=o.integer("version", minimum=1),
            content_digest=o.hex64("content_digest"),
            row_count=o.integer("row_count"),
            byte_size=o.integer("byte_size"),
            format=o.text("format"),
            created_at=o.integer("created_at"),
            log_leaf_hash=o.hex64("log_leaf_hash"),
            row_root=o.opt_hex64("row_root"),
            computation=_offer(o),
            policy=_policy(o),
        )


@dataclass(frozen=True, slots=True)
class Listing:
    """A listing (``state``: draft, submitted, under_review, published, rejected,
    delisted). ``version``/``content_digest``/``row_root`` are the current content's.
    ``custody``: ``provider`` (the provider's agent keeps the data and delivers
    it encrypted to each buyer) or ``exchange`` (the exchange stores the content);
    ``delivery_window_s``: how long the provider has to deliver a paid order.
    ``policy``: the current version's usage policy (ledger.protocol.policy; every
    order is checked against it). After
    :meth:`~clients.sdk.ExchangeClient.new_version`, ``added_version`` is the
    version just declared."""

    id: str
    state: str
    owner: str
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
    rejection_reason: str | None
    delisting_reason: str | None
    created_at: int
    updated_at: int
    published_at: int | None
    custody: str = "exchange"
    delivery_window_s: int | None = None
    row_root: str | None = None
    computation: ComputationOffer | None = None
    cost_basis: dict[str, Any] | None = None
    """The current version's declared costs (reference price's cost method)."""
    policy: Policy = DEFAULT_POLICY
    certificate: str | None = None
    """Number of the current version's registration certificate (null before publication)."""
    log: Appended | None = None
    added_version: ListingVersion | None = None

    def provider_keys(self) -> frozenset[str]:
        """Key ids of the listing's providers (the owner and its co-providers)."""
        return frozenset({self.owner, *(p.key_id for p in self.providers)})

    def content_fields(self) -> dict[str, Any]:
        """The listing's editable content as the API takes it (``listing.edited``
        replaces the whole content): change what you need and pass it to
        :meth:`~clients.sdk.ExchangeClient.update_listing`."""
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
            "computation": None if self.computation is None else self.computation.to_dict(),
            **({} if self.cost_basis is None else {"cost_basis": dict(self.cost_basis)}),
            "policy": self.policy.to_dict(),
            **(
                {}
                if self.delivery_window_s is None
                else {"delivery_window_s": self.delivery_window_s}
            ),
        }

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        path: str = "",
        log: Appended | None = None,
        added_version: ListingVersion | None = None,
    ) -> Listing:
        o = _Obj(data, path)
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
            sample_rows=o.items("sample_rows", _objects),
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
            rejection_reason=o.opt_text("rejection_reason"),
            delisting_reason=o.opt_text("delisting_reason"),
            created_at=o.integer("created_at"),
            updated_at=o.integer("updated_at"),
            published_at=o.opt_integer("published_at"),
            custody=o.opt_text("custody") or "exchange",
            delivery_window_s=o.opt_integer("delivery_window_s"),
            row_root=o.opt_hex64("row_root"),
            computation=_offer(o),
            cost_basis=o.mapping("cost_basis") if o.has("cost_basis") else None,
            policy=_policy(o),
            certificate=o.opt_text("certificate"),
            log=log,
            added_version=added_version,
        )

    @classmethod
    def from_changed(cls, data: Any) -> Listing:
        """``{"listing", "log"}``, or ``{"listing", "version", "log"}`` for a new version."""
        o = _Obj(data, "")
        added = (
            ListingVersion.from_dict(o.raw("version"), "version") if "version" in o.data else None
        )
        return cls.from_dict(
            o.raw("listing"), path="listing", log=_required_log(o), added_version=added
        )


@dataclass(frozen=True, slots=True)
class FacetCount:
    value: str
    count: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FacetCount:
        o = _Obj(data, where)
        return cls(o.text("value"), o.integer("count"))


@dataclass(frozen=True, slots=True)
class Facets:
    """Counts over every listing matching the query (not only the page)."""

    category: tuple[FacetCount, ...]
    classification: tuple[FacetCount, ...]
    pricing_model: tuple[FacetCount, ...]
    tags: tuple[FacetCount, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str = "facets") -> Facets:
        o = _Obj(data, where)
        return cls(
            category=o.items("category", FacetCount.from_dict),
            classification=o.items("classification", FacetCount.from_dict),
            pricing_model=o.items("pricing_model", FacetCount.from_dict),
            tags=o.items("tags", FacetCount.from_dict),
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A published listing as search shows it (``listing(id)`` has the rest)."""

    id: str
    title: str
    summary: str
    category: str
    tags: tuple[str, ...]
    classification: str | None
    owner: str
    providers: tuple[str, ...]
    pricing: dict[str, Any]
    price_fen: int
    format: str
    row_count: int
    byte_size: int
    version: int
    update_frequency: str
    published_at: int
    score: int | None
    custody: str | None = None
    provider_name: str = ""
    """The owner's display name."""
    price_unit: str = ""
    """What ``price_fen`` buys: ``free``, ``one-off``, ``per 1,000 rows``, ``per N days``."""

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SearchHit:
        o = _Obj(data, where)
        return cls(
            id=o.text("id"),
            title=o.text("title"),
            summary=o.text("summary"),
            category=o.text("category"),
            tags=o.strings("tags"),
            classification=o.opt_text("classification"),
            owner=o.hex64("owner"),
            providers=o.strings("providers"),
            pricing=o.mapping("pricing"),
            price_fen=o.integer("price_fen"),
            format=o.text("format"),
            row_count=o.integer("row_count"),
            byte_size=o.integer("byte_size"),
            version=o.integer("version", minimum=1),
            update_frequency=o.text("update_frequency"),
            published_at=o.integer("published_at"),
            score=o.opt_integer("score"),
            custody=o.opt_text("custody"),
            provider_name=o.opt_text("provider_name") or "",
            price_unit=o.opt_text("price_unit") or "",
        )


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results; pass ``next_cursor`` as ``cursor=`` for the next
    (``None`` at the end). ``facets`` is ``None`` when asked with ``facets=False``."""

    items: tuple[SearchHit, ...]
    facets: Facets | None
    next_cursor: str | None
    total: int

    @classmethod
    def from_dict(cls, data: Any) -> SearchPage:
        o = _Obj(data, "")
        return cls(
            items=o.items("items", SearchHit.from_dict),
            facets=Facets.from_dict(o.raw("facets")) if o.has("facets") else None,
            next_cursor=o.opt_text("next_cursor"),
            total=o.integer("total"),
        )


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True, slots=True)
class Movement:
    """One change of a balance (``kind``: deposit, escrow_hold, escrow_release, payout,
    fee, refund, clawback, …), backed by the log record with ``leaf_hash``."""

    id: int
    kind: str
    amount: int
    available_delta: int
    held_delta: int
    order_id: str | None
    reference: str | None
    leaf_hash: str
    created_at: int

    @classmethod
    def from_dict(cls, data: Any, where: str = "movement") -> Movement:
        o = _Obj(data, where)
        return cls(
            id=o.integer("id"),
            kind=o.text("kind"),
            amount=o.integer("amount", minimum=-MAX_SAFE_INTEGER),
            available_delta=o.integer("available_delta", minimum=-MAX_SAFE_INTEGER),
            held_delta=o.integer("held_delta", minimum=-MAX_SAFE_INTEGER),
            order_id=o.opt_text("order_id"),
            reference=o.opt_text("reference"),
            leaf_hash=o.hex64("leaf_hash"),
            created_at=o.integer("created_at"),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """Balances and the most recent movements (newest first). After a deposit,
    ``movements`` is the deposit's one movement and ``log`` its record."""

    key_id: str
    available: int
    held: int
    movements: tuple[Movement, ...]
    log: Appended | None = None

    @classmethod
    def from_view(cls, data: Any) -> Account:
        """``{"account", "movements"}`` (``GET /accounts/…``)."""
        o = _Obj(data, "")
        balance = Balance.from_dict(o.raw("account"))
        movements = o.items("movements", Movement.from_dict)
        return cls(balance.key_id, balance.available, balance.held, movements)

    @classmethod
    def from_deposit(cls, data: Any) -> Account:
        """``{"account", "movement", "log"}`` (``POST /accounts/{key_id}/deposits``)."""
        o = _Obj(data, "")
        balance = Balance.from_dict(o.raw("account"))
        movement = Movement.from_dict(o.raw("movement"))
        return cls(balance.key_id, balance.available, balance.held, (movement,), _required_log(o))


# --------------------------------------------------------------------------- orders


@dataclass(frozen=True, slots=True)
class Settlement:
    """How an order's price was paid out: ``payouts`` (provider key id → fen) plus
    ``platform_fee`` make ``amount``. ``log`` is the exchange's ``settlement.paid``
    record when the answer carries it."""

    amount: int
    platform_fee: int
    payouts: dict[str, int]
    remainder_rule: str | None = None
    log: Appended | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "settlement") -> Settlement:
        o = _Obj(data, where)
        return cls(
            amount=o.integer("amount"),
            platform_fee=o.integer("platform_fee"),
            payouts=_fen_by_payee(o, "payouts"),
            remainder_rule=o.opt_text("remainder_rule"),
            log=o.log(),
        )


@dataclass(frozen=True, slots=True)
class Refund:
    """Money an action returned to the buyer: ``amount`` in all, ``from_escrow`` of
    it still held, the rest clawed back from the payees (``clawbacks``: provider
    key id, or ``platform``, → fen)."""

    amount: int
    from_escrow: int
    clawbacks: dict[str, int]

    @classmethod
    def from_dict(cls, data: Any, where: str = "refund") -> Refund:
        o = _Obj(data, where)
        return cls(
            amount=o.integer("amount"),
            from_escrow=o.integer("from_escrow"),
            clawbacks=_fen_by_payee(o, "clawbacks"),
        )


def _fen_by_payee(o: _Obj, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for payee, fen in o.mapping(key).items():
        if isinstance(fen, bool) or not isinstance(fen, int) or not 0 <= fen <= MAX_SAFE_INTEGER:
            raise RecordFormatError("expected fen (a non-negative integer)", path=o.path(key))
        out[payee] = fen
    return out


@dataclass(frozen=True, slots=True)
class Order:
    """An order (``state``: placed, delivered, accepted, disputed, settled, refunded).
    ``escrow`` is what is still held for it. Revocation is not a state: see
    ``revoked_at``. ``account`` is the buyer's balance after ``place_order``;
    ``settlement`` is present once settled (with its ``log`` in the answer that
    settled it); ``refund`` in the answer of an action that returned money
    (resolve with ``refund``, revoke). A quantity order names its rows:
    ``rows`` from ``row_offset`` (both ``None`` otherwise). ``delivery_deadline``
    (while placed): when an undelivered order is refunded. ``declaration``: the
    buyer's signed declaration of use; ``policy_digest``: the usage policy it
    agreed to; ``use_until``: when the policy's days of use end."""

    id: str
    buyer: str
    listing_id: str
    version: int
    content_digest: str
    quote_id: str
    terms: dict[str, Any]
    amount: int
    escrow: int
    state: str
    created_at: int
    updated_at: int
    acceptance_deadline: int | None
    access_expires_at: int | None
    placed_leaf_hash: str
    delivered_at: int | None = None
    revoked_at: int | None = None
    revocation_reason: str | None = None
    renews_order_id: str | None = None
    rows: int | None = None
    row_offset: int | None = None
    custody: str | None = None
    delivery_deadline: int | None = None
    settlement: Settlement | None = None
    refund: Refund | None = None
    account: Balance | None = None
    log: Appended | None = None
    declaration: Declaration | None = None
    policy_digest: str | None = None
    use_until: int | None = None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Order:
        o = _Obj(data, path)
        return cls(
            id=o.text("id"),
            buyer=o.hex64("buyer"),
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            content_digest=o.hex64("content_digest"),
            quote_id=o.text("quote_id"),
            terms=o.mapping("terms"),
            amount=o.integer("amount"),
            escrow=o.integer("escrow"),
            state=o.text("state"),
            created_at=o.integer("created_at"),
            updated_at=o.integer("updated_at"),
            acceptance_deadline=o.opt_integer("acceptance_deadline"),
            access_expires_at=o.opt_integer("access_expires_at"),
            placed_leaf_hash=o.hex64("placed_leaf_hash"),
            delivered_at=o.opt_integer("delivered_at"),
            revoked_at=o.opt_integer("revoked_at"),
            revocation_reason=o.opt_text("revocation_reason"),
            renews_order_id=o.opt_text("renews_order_id"),
            rows=o.opt_integer("rows", minimum=1),
            row_offset=o.opt_integer("row_offset"),
            custody=o.opt_text("custody"),
            delivery_deadline=o.opt_integer("delivery_deadline"),
            settlement=Settlement.from_dict(o.raw("settlement"), o.path("settlement"))
            if o.has("settlement")
            else None,
            declaration=Declaration.from_dict(o.raw("declaration"), o.path("declaration"))
            if o.has("declaration")
            else None,
            policy_digest=o.opt_hex64("policy_digest"),
            use_until=o.opt_integer("use_until"),
        )

    def row_range(self) -> RowRange | None:
        """The rows bought (a quantity order), from the order's terms."""
        rows = self.rows if self.rows is not None else self.terms.get("rows")
        if rows is None:
            return None
        offset = self.row_offset if self.row_offset is not None else self.terms.get("row_offset", 0)
        return RowRange(int(offset or 0), int(rows))

    @classmethod
    def from_changed(cls, data: Any) -> Order:
        """``{"order", "log", "account"?, "settlement"?, "refund"?}``: the answer of a
        signed action on an order (placed, accepted, disputed, resolved, revoked)."""
        o = _Obj(data, "")
        order = cls.from_dict(o.raw("order"), path="order")
        settlement = order.settlement
        if o.has("settlement"):
            settlement = Settlement.from_dict(o.raw("settlement"))
        return replace(
            order,
            settlement=settlement,
            refund=Refund.from_dict(o.raw("refund")) if o.has("refund") else None,
            account=Balance.from_dict(o.raw("account")) if o.has("account") else None,
            log=_required_log(o),
        )


@dataclass(frozen=True, slots=True)
class OrderPage:
    """A page of orders, newest first; ``next_offset`` is ``None`` on the last page."""

    items: tuple[Order, ...]
    next_offset: int | None

    @classmethod
    def from_dict(cls, data: Any) -> OrderPage:
        o = _Obj(data, "")
        return cls(
            items=o.items("items", lambda item, where: Order.from_dict(item, path=where)),
            next_offset=o.opt_integer("next_offset"),
        )


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True, slots=True)
class DeliveryEnvelope:
    """What the buyer needs to fetch and open an order's content: ``envelope`` is the
    content key SM2-encrypted to the buyer (GM/T 0009 DER), ``content_digest`` the
    SM3 of the plaintext the order commits to, ``size``/``ciphertext_size`` in bytes.
    ``log`` is the exchange's ``delivery.issued`` record (signed by the log key)."""

    order_id: str
    listing_id: str
    version: int
    content_digest: str
    size: int
    ciphertext_size: int
    envelope: bytes = field(repr=False)
    download_path: str
    log: Appended | None = None

    @classmethod
    def from_dict(cls, data: Any) -> DeliveryEnvelope:
        o = _Obj(data, "")
        try:
            envelope = base64.b64decode(o.text("envelope"), validate=True)
        except (binascii.Error, ValueError):
            raise RecordFormatError("expected base64", path="envelope") from None
        if not envelope:
            raise RecordFormatError("empty envelope", path="envelope")
        return cls(
            order_id=o.text("order_id"),
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            content_digest=o.hex64("content_digest"),
            size=o.integer("size"),
            ciphertext_size=o.integer("ciphertext_size"),
            envelope=envelope,
            download_path=o.text("download_path"),
            log=_required_log(o),
        )


@dataclass(frozen=True, slots=True)
class ContentUploaded:
    """A listing version's content as the exchange stored it: ``sm3`` (hex) and
    ``size`` of the plaintext. ``created`` is False when the same bytes were
    already there (an idempotent retry). No log record: the listing's own record
    already commits the digest."""

    listing_id: str
    version: int
    sm3: str
    size: int
    created: bool

    @classmethod
    def from_dict(cls, data: Any, *, created: bool) -> ContentUploaded:
        o = _Obj(data, "")
        return cls(
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            sm3=o.hex64("sm3"),
            size=o.integer("size"),
            created=created,
        )


@dataclass(frozen=True, slots=True)
class DecryptedFile:
    """A delivery opened by ``open_delivery``: the plaintext at ``path``, whose SM3
    (``sm3``, hex) is the order's committed digest, ``size`` bytes."""

    path: Path
    sm3: str
    size: int


@dataclass(frozen=True, slots=True)
class DeliverableUploaded:
    """An order's deliverable (the provider-encrypted ciphertext) as the exchange
    stored it: ``ciphertext_sm3`` (hex) and ``ciphertext_size``. No log record:
    the provider's ``delivery.issued`` record commits to both."""

    order_id: str
    ciphertext_sm3: str
    ciphertext_size: int

    @classmethod
    def from_dict(cls, data: Any) -> DeliverableUploaded:
        o = _Obj(data, "")
        return cls(
            order_id=o.text("order_id"),
            ciphertext_sm3=o.hex64("ciphertext_sm3"),
            ciphertext_size=o.integer("ciphertext_size"),
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """An order's latest ``delivery.issued`` (``GET /orders/{id}/delivery``):
    ``record`` as logged at ``log_index``, signed by a provider of the listing
    (``custody == "provider"``, then ``payload`` is its :class:`ProviderDelivery`)
    or by the log key (``custody == "exchange"``). Nothing here is checked yet:
    :meth:`~clients.sdk.ExchangeClient.receive` checks it."""

    custody: str
    record: SignedRecord
    log_index: int
    download_path: str

    @property
    def payload(self) -> ProviderDelivery:
        """The provider-signed payload; :class:`RecordFormatError` if it is not one."""
        return ProviderDelivery.from_dict(thaw(self.record.record.payload))

    @classmethod
    def from_dict(cls, data: Any) -> Delivery:
        o = _Obj(data, "")
        return cls(
            custody=o.text("custody"),
            record=SignedRecord.from_dict(o.raw("record"), path="record"),
            log_index=o.integer("log_index"),
            download_path=o.text("download_path"),
        )


@dataclass(frozen=True, slots=True)
class Received:
    """A provider-held delivery received and checked: the plaintext at ``path``
    (``size`` bytes, SM3 ``sm3``), ``rows`` delivered (``None``: the whole
    dataset), and the provider-signed ``delivery`` it was checked against."""

    path: Path
    sm3: str
    size: int
    rows: RowRange | None
    delivery: ProviderDelivery


# --------------------------------------------------------------------------- cross-border


@dataclass(frozen=True, slots=True)
class CrossBorderAssessment:
    """An operator's cross-border assessment (数据出境安全评估) for one buyer and
    listing: while ``approved`` and before ``valid_until`` (ms), the buyer may order
    the listing for processing outside CN. ``leaf_hash``: its record's."""

    listing_id: str
    buyer: str
    approved: bool
    reference: str
    valid_until: int | None
    assessed_at: int
    operator: str
    leaf_hash: str
    log: Appended | None = None

    @classmethod
    def from_dict(
        cls, data: Any, where: str = "", log: Appended | None = None
    ) -> CrossBorderAssessment:
        o = _Obj(data, where)
        return cls(
            listing_id=o.text("listing_id"),
            buyer=o.hex64("buyer"),
            approved=o.boolean("approved"),
            reference=o.text("reference"),
            valid_until=o.opt_integer("valid_until"),
            assessed_at=o.integer("assessed_at"),
            operator=o.hex64("operator"),
            leaf_hash=o.hex64("leaf_hash"),
            log=log,
        )

    @classmethod
    def from_recorded(cls, data: Any) -> CrossBorderAssessment:
        """``{"assessment", "log"}``: the answer of ``POST /crossborder-assessments``."""
        o = _Obj(data, "")
        return cls.from_dict(o.raw("assessment"), "assessment", log=_required_log(o))

    @classmethod
    def page(cls, data: Any) -> list[CrossBorderAssessment]:
        """The items of a ``GET /crossborder-assessments`` page."""
        o = _Obj(data, "")
        return list(o.items("items", cls.from_dict))
