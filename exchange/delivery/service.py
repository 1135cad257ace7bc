"""Delivering an order's data: the envelope (``delivery.issued``) and the download.

:func:`issue` gives the order's buyer the content key SM2-encrypted to its
registered public key (``ContentStore.envelope_for``) and logs a
``delivery.issued`` record signed by the exchange's log key — the exchange
is the actor, the buyer signs nothing — in ONE transaction with the order's
change (:func:`exchange.records.commit_with_exchange_record`): the first
issuance moves the order placed → delivered, sets ``delivered_at`` and opens
the acceptance window (``acceptance_deadline``). Later calls issue a fresh
envelope (a new record) and change nothing else, so a buyer that lost its
envelope asks again.

:func:`open_download` hands out the stored ciphertext (never decrypted by the
exchange) once an envelope was issued. Both apply the one access rule,
:func:`exchange.orders.access.check_access`, and show an order only to its
buyer (404 ``order_not_found`` for anyone else, as if it did not exist).
"""

from __future__ import annotations

import base64

from sqlmodel import Session

from exchange.content import ContentNotFoundError, ContentStore, Delivery, StoredContent
from exchange.content.deliverables import DeliverableStore, StoredDeliverable
from exchange.delivery.errors import (
    ContentNotAvailableError,
    NotDeliveredError,
    ProviderCustodyError,
)
from exchange.delivery.provider import delivered_upload
from exchange.delivery.schemas import DeliveryIssued
from exchange.orders.access import check_access
from exchange.orders.models import Order, OrderDelivery, OrderState
from exchange.orders.service import OrderNotFoundError
from exchange.participants.models import Principal
from exchange.records import commit_with_record, exchange_action, log_receipt
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import sm3

__all__ = ["DELIVERY_ISSUED", "download_path", "issue", "open_download"]

DELIVERY_ISSUED = "delivery.issued"


def download_path(order_id: str) -> str:
    return f"/orders/{order_id}/content"


def _own_order(session: Session, principal: Principal, order_id: str) -> Order:
    order = session.get(Order, order_id)
    if order is None or order.buyer_key_id != principal.key_id:
        raise OrderNotFoundError(f"no order {order_id}")
    return order


def _stored(store: ContentStore, order: Order) -> StoredContent:
    try:
        content = store.get(order.listing_id, order.version)
    except ContentNotFoundError:
        raise ContentNotAvailableError(
            f"the provider has not uploaded the content of listing {order.listing_id} "
            f"version {order.version} yet; ask again later"
        ) from None
    if content.sm3_hex != order.content_digest:  # the store refuses other bytes: a fault
        raise ContentNotAvailableError(
            f"the stored content of listing {order.listing_id} version {order.version} is "
            f"not the one order {order.id} bought"
        )
    return content


def issue(
    session: Session,
    store: ContentStore,
    log_key: SM2PrivateKey,
    principal: Principal,
    order_id: str,
    *,
    acceptance_window_s: int,
    now_ms: int,
) -> DeliveryIssued:
    """A fresh envelope for the buyer of ``order_id`` (see the module docstring).

    Raises 404 ``order_not_found``, 409 ``provider_custody`` (the provider's agent
    delivers), 403 ``access_revoked`` / ``access_expired``, 409 ``order_closed``,
    409 ``content_not_available``, 409 ``concurrent_update`` (the order changed
    meanwhile; ask again).
    """
    order = _own_order(session, principal, order_id)
    if order.custody == "provider":
        raise ProviderCustodyError(
            f"the data of order {order_id} stays with its provider, whose agent delivers it: "
            f"GET /orders/{order_id}/delivery"
        )
    check_access(order, now_ms)
    content = _stored(store, order)
    envelope = store.envelope_for(SM2PublicKey.from_pem(principal.public_key_pem), content)
    payload = {
        "order_id": order.id,
        "buyer": order.buyer_key_id,
        "listing_id": order.listing_id,
        "version": order.version,
        "content_digest": order.content_digest,
        "envelope_sm3": sm3(envelope).hex(),
    }

    def stage() -> None:
        session.add(OrderDelivery(leaf_hash=action.submission.leaf_hash.hex(), order_id=order.id))
        if order.state == OrderState.PLACED:
            order.state = OrderState.DELIVERED.value
            order.delivered_at = now_ms
            order.acceptance_deadline = now_ms + acceptance_window_s * 1000
            order.updated_at = now_ms
            session.add(order)

    action = exchange_action(log_key, DELIVERY_ISSUED, payload)
    _, accepted = commit_with_record(session, action, log_key, stage)
    return DeliveryIssued(
        order_id=order_id,
        listing_id=content.listing_id,
        version=content.version,
        content_digest=content.sm3_hex,
        size=content.plaintext_size,
        ciphertext_size=content.ciphertext_size,
        envelope=base64.b64encode(envelope).decode("ascii"),
        download_path=download_path(order_id),
        log=log_receipt(accepted),
    )


def open_download(
    session: Session,
    store: ContentStore,
    deliverables: DeliverableStore,
    principal: Principal,
    order_id: str,
    *,
    now_ms: int,
) -> Delivery | StoredDeliverable:
    """The stored ciphertext of the buyer's order, once delivered: the listing
    version's (exchange custody, after an envelope was issued) or the order's own
    deliverable that the provider's ``delivery.issued`` names (provider custody).

    Raises 404 ``order_not_found``, 403 ``access_revoked`` / ``access_expired``,
    409 ``order_closed``, 409 ``not_delivered``, 409 ``content_not_available``.
    """
    order = _own_order(session, principal, order_id)
    check_access(order, now_ms)
    if order.delivered_at is None:
        how = (
            "its provider has not delivered it"
            if order.custody == "provider"
            else f"request the envelope first: POST /orders/{order_id}/delivery"
        )
        raise NotDeliveredError(f"order {order_id} has not been delivered yet; {how}")
    if order.custody == "provider":
        upload = delivered_upload(session, deliverables, order)
        if upload is None:
            raise ContentNotAvailableError(f"the deliverable of order {order_id} is gone")
        return upload
    try:
        return store.open_for_delivery(order.listing_id, order.version)
    except ContentNotFoundError:
        raise ContentNotAvailableError(
            f"the content of listing {order.listing_id} version {order.version} is gone"
        ) from None
