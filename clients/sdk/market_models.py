"""Typed answers of the marketplace API (participants, listings, search, quotes,
orders, accounts, delivery): frozen dataclasses with ``from_dict``.

Participants, listings and search answers are :mod:`ledger.protocol.participant`,
:mod:`ledger.protocol.listing` and :mod:`ledger.protocol.search`, the classes the
exchange serves: :class:`Participant` and :class:`Listing` derive from them only to
carry ``log`` (and a listing's ``added_version``).

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
from ledger.protocol import listing as listing_wire
from ledger.protocol import participant as participant_wire
from ledger.protocol.accounts import PLATFORM_ACCOUNT, Balance
from ledger.protocol.delivery import ProviderDelivery, RowRange
from ledger.protocol.listing import Column, ListingVersion, ProviderShare
from ledger.protocol.policy import Declaration
from ledger.protocol.quote import QUOTE_KIND, Quote
from ledger.protocol.reader import JSONObject
from ledger.protocol.search import FacetCount, Facets, SearchHit, SearchPage
from ledger.records import (
    MAX_SAFE_INTEGER,
    RecordFormatError,
    SignedRecord,
    thaw,
)

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


# --------------------------------------------------------------------------- participants


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant(participant_wire.Participant):
    """A participant's public profile (:class:`ledger.protocol.participant.Participant`:
    ``status`` is ``unverified``, ``active`` or ``suspended``; ``sm2_public_key`` is
    the key, checked to be the key of ``key_id``) and, after a registration,
    approval or suspension, the ``log`` of its record."""

    log: Appended | None = None

    @classmethod
    def from_changed(cls, data: Any) -> Participant:
        """``{"participant": …, "log": …}`` (a registration, approval, suspension)."""
        o = _Obj(data, "")
        participant = cls.from_dict(o.raw("participant"), path="participant")
        return replace(participant, log=_required_log(o))


def _required_log(o: _Obj) -> Appended:
    log = o.log()
    if log is None:
        raise RecordFormatError("missing field", path=o.path("log"))
    return log


# --------------------------------------------------------------------------- listings


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing(listing_wire.Listing):
    """A listing (:class:`ledger.protocol.listing.Listing`: its state, content,
    custody, ``usage_policy``, ``computation_offer``, …) and, after a listing
    action, the ``log`` of its record. After
    :meth:`~clients.sdk.ExchangeClient.new_version`, ``added_version`` is the
    version just declared. :meth:`content_fields` gives the editable content to
    change and pass to :meth:`~clients.sdk.ExchangeClient.update_listing`."""

    log: Appended | None = None
    added_version: ListingVersion | None = None

    @classmethod
    def from_changed(cls, data: Any) -> Listing:
        """``{"listing", "log"}``, or ``{"listing", "version", "log"}`` for a new version."""
        o = _Obj(data, "")
        added = (
            ListingVersion.from_dict(o.raw("version"), "version") if "version" in o.data else None
        )
        listing = cls.from_dict(o.raw("listing"), path="listing")
        return replace(listing, log=_required_log(o), added_version=added)


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
