"""Who may see which event: the one place that decides it.

Every event from a record is visible to the record's actor and to the parties of
what it is about, as they are now:

* an order: its buyer and the providers of its listing (owner and co-providers);
* a withdrawal: the participant whose withdrawal it is (its ``key_id``; the
  platform's own withdrawals, ``key_id`` ``"platform"``, name no participant);
* a certificate: the providers of its listing, the holders of any of its rights,
  and for a transfer record the transfer's receiver (even when it was refused).

``anchor.final`` is about the public log and visible to every participant;
operators see everything. :func:`read_parties` reads what that needs for a page's
records (their :class:`Subject`) in a bounded number of queries, whatever the
page's size: none for a kind of subject the page does not have, at most nine.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.certificates.models import Certificate, CertificateEvent
from exchange.events.kinds import CERTIFICATE_RECORDS, WITHDRAWAL_RECORDS
from exchange.listings.models import Listing, ListingProvider
from exchange.log.models import LogEntry
from exchange.orders.models import Order
from exchange.payouts.models import Withdrawal

__all__ = [
    "EVERYONE",
    "Audience",
    "CertificateParties",
    "OrderParties",
    "Parties",
    "Subject",
    "Viewer",
    "audience_of",
    "certificate_parties",
    "order_parties",
    "read_parties",
    "transfer_receivers",
    "withdrawal_owners",
]

TRANSFER_OFFERED: Final = "certificate.transfer_offered"
TRANSFER_CLOSINGS: Final = frozenset(
    {"certificate.transfer_approved", "certificate.transfer_rejected"}
)
"""An operator's decision on the transfer last offered: the record does not name its
receiver (``transfer_offered`` names it, ``transfer_accepted`` is signed by it)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is reading the feed (or owns the webhook)."""

    key_id: str
    operator: bool = False


@dataclass(frozen=True, slots=True)
class OrderParties:
    order_id: str
    listing_id: str
    buyer: str
    providers: frozenset[str]
    """The listing's owner and co-providers."""

    @property
    def parties(self) -> frozenset[str]:
        return self.providers | {self.buyer}


@dataclass(frozen=True, slots=True)
class CertificateParties:
    number: str
    listing_id: str
    providers: frozenset[str]
    """The listing's owner and co-providers."""
    holders: frozenset[str]
    """Whoever holds a share of any right now."""

    @property
    def parties(self) -> frozenset[str]:
        return self.providers | self.holders


@dataclass(frozen=True, slots=True)
class Audience:
    """Who may see one event (besides the operators, who see all)."""

    everyone: bool = False
    parties: frozenset[str] = frozenset()

    def admits(self, viewer: Viewer) -> bool:
        return viewer.operator or self.everyone or viewer.key_id in self.parties


EVERYONE = Audience(everyone=True)


def _text(payload: object, name: str) -> str | None:
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Subject:
    """What one log record is about, as its payload names it."""

    record_type: str
    leaf_hash: str
    """Hex."""
    actor: str
    order_id: str | None
    withdrawal_id: str | None
    certificate: str | None
    """The certificate's number."""
    receiver: str | None
    """A ``transfer_offered``'s ``to``."""

    @classmethod
    def of(cls, record_type: str, leaf_hash: str, record: Mapping[str, object]) -> Subject:
        payload = record.get("payload")
        certificate = record_type in CERTIFICATE_RECORDS
        return cls(
            record_type,
            leaf_hash,
            str(record["actor"]),
            _text(payload, "order_id"),
            _text(payload, "withdrawal_id") if record_type in WITHDRAWAL_RECORDS else None,
            _text(payload, "number") if certificate else None,
            _text(payload, "to") if record_type == TRANSFER_OFFERED else None,
        )


@dataclass(frozen=True, slots=True)
class Parties:
    """The parties of a page's subjects (:func:`read_parties`)."""

    orders: Mapping[str, OrderParties]
    withdrawals: Mapping[str, str]
    """Withdrawal id → whose it is."""
    certificates: Mapping[str, CertificateParties]
    receivers: Mapping[str, str]
    """Leaf hash of a :data:`TRANSFER_CLOSINGS` record → the transfer's receiver."""

    def _order(self, subject: Subject) -> OrderParties | None:
        return self.orders.get(subject.order_id) if subject.order_id else None

    def _certificate(self, subject: Subject) -> CertificateParties | None:
        return self.certificates.get(subject.certificate) if subject.certificate else None

    def audience(self, subject: Subject) -> Audience:
        parties: set[str] = set()
        order = self._order(subject)
        if order is not None:
            parties |= order.parties
        owner = self.withdrawals.get(subject.withdrawal_id) if subject.withdrawal_id else None
        if owner is not None:
            parties.add(owner)
        certificate = self._certificate(subject)
        if certificate is not None:
            parties |= certificate.parties
            receiver = subject.receiver or self.receivers.get(subject.leaf_hash)
            if receiver is not None:
                parties.add(receiver)
        return audience_of(subject.actor, parties)

    def listing_of(self, subject: Subject) -> str | None:
        """The listing of the subject's order or certificate."""
        about = self._order(subject) or self._certificate(subject)
        return None if about is None else about.listing_id


def read_parties(session: Session, subjects: Collection[Subject]) -> Parties:
    """The parties of every one of ``subjects``."""
    return Parties(
        order_parties(session, {s.order_id for s in subjects if s.order_id}),
        withdrawal_owners(session, {s.withdrawal_id for s in subjects if s.withdrawal_id}),
        certificate_parties(session, {s.certificate for s in subjects if s.certificate}),
        transfer_receivers(
            session,
            {
                s.leaf_hash: s.certificate
                for s in subjects
                if s.certificate and s.record_type in TRANSFER_CLOSINGS
            },
        ),
    )


def audience_of(actor: str, parties: Iterable[str] = ()) -> Audience:
    """The audience of a record by ``actor`` about a subject with these ``parties``
    (none: no such subject, which an event record never lacks; then only the actor
    and operators see it)."""
    return Audience(parties=frozenset({actor, *parties}))


def _listing_providers(session: Session, listing_ids: Collection[str]) -> Mapping[str, set[str]]:
    """Each listing's owner and co-providers (two queries)."""
    providers: dict[str, set[str]] = defaultdict(set)
    if not listing_ids:
        return providers
    ids = sorted(set(listing_ids))
    for listing_id, owner in session.execute(
        select(col(Listing.id), col(Listing.owner_key_id)).where(col(Listing.id).in_(ids))
    ):
        providers[listing_id].add(owner)
    for listing_id, provider in session.execute(
        select(col(ListingProvider.listing_id), col(ListingProvider.provider_key_id)).where(
            col(ListingProvider.listing_id).in_(ids)
        )
    ):
        providers[listing_id].add(provider)
    return providers


def order_parties(session: Session, order_ids: Collection[str]) -> Mapping[str, OrderParties]:
    """The parties of each of ``order_ids`` that exists (three queries)."""
    if not order_ids:
        return {}
    orders = session.execute(
        select(col(Order.id), col(Order.listing_id), col(Order.buyer_key_id)).where(
            col(Order.id).in_(sorted(set(order_ids)))
        )
    ).all()
    providers = _listing_providers(session, {listing_id for _, listing_id, _ in orders})
    return {
        order_id: OrderParties(order_id, listing_id, buyer, frozenset(providers[listing_id]))
        for order_id, listing_id, buyer in orders
    }


def withdrawal_owners(session: Session, withdrawal_ids: Collection[str]) -> Mapping[str, str]:
    """The ``key_id`` of each of ``withdrawal_ids`` that exists (one query)."""
    if not withdrawal_ids:
        return {}
    rows = session.execute(
        select(col(Withdrawal.id), col(Withdrawal.key_id)).where(
            col(Withdrawal.id).in_(sorted(set(withdrawal_ids)))
        )
    ).all()
    return {withdrawal_id: key_id for withdrawal_id, key_id in rows}


def certificate_parties(
    session: Session, numbers: Collection[str]
) -> Mapping[str, CertificateParties]:
    """The parties of each of the certificates ``numbers`` that exists (three queries)."""
    if not numbers:
        return {}
    certificates = session.execute(
        select(col(Certificate.number), col(Certificate.listing_id), col(Certificate.rights)).where(
            col(Certificate.number).in_(sorted(set(numbers)))
        )
    ).all()
    providers = _listing_providers(session, {listing_id for _, listing_id, _ in certificates})
    return {
        number: CertificateParties(
            number,
            listing_id,
            frozenset(providers[listing_id]),
            frozenset(holder["participant"] for holders in rights.values() for holder in holders),
        )
        for number, listing_id, rights in certificates
    }


def transfer_receivers(session: Session, closings: Mapping[str, str]) -> Mapping[str, str]:
    """The receiver of the transfer each of ``closings`` (the leaf hash, hex, of a
    :data:`TRANSFER_CLOSINGS` record → its certificate's number) closes: the ``to``
    of the certificate's last ``transfer_offered`` before it (two queries)."""
    if not closings:
        return {}
    history = session.execute(
        select(
            col(CertificateEvent.number),
            col(CertificateEvent.leaf_hash),
            col(CertificateEvent.record_type),
        )
        .where(col(CertificateEvent.number).in_(sorted(set(closings.values()))))
        .where(col(CertificateEvent.record_type).in_([TRANSFER_OFFERED, *TRANSFER_CLOSINGS]))
        .order_by(col(CertificateEvent.number), col(CertificateEvent.position))
    ).all()
    offer_of: dict[str, str] = {}
    last_offer: dict[str, str] = {}
    for number, leaf_hash, record_type in history:
        if record_type == TRANSFER_OFFERED:
            last_offer[number] = leaf_hash
        elif number in last_offer:  # a closing always follows its certificate's offer
            offer_of[leaf_hash] = last_offer[number]
    offers = {offer_of[leaf] for leaf in closings if leaf in offer_of}
    if not offers:
        return {}
    leaves = session.execute(
        select(col(LogEntry.leaf_hash), col(LogEntry.leaf)).where(
            col(LogEntry.leaf_hash).in_([bytes.fromhex(offer) for offer in sorted(offers)])
        )
    ).all()
    receiver = {
        bytes(leaf_hash).hex(): json.loads(bytes(leaf))["record"]["payload"]["to"]
        for leaf_hash, leaf in leaves
    }
    return {leaf: receiver[offer_of[leaf]] for leaf in closings if offer_of.get(leaf) in receiver}
