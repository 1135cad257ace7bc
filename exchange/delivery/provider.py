"""Provider-custody delivery: the provider's agent uploads an order's ciphertext and
signs a ``delivery.issued`` record describing it (``ProviderDelivery``).

1. ``PUT /orders/{id}/deliverable`` (:func:`upload_target`, then
   :meth:`~exchange.content.deliverables.DeliverableStore.write` through the
   signed Content-Digest check): the ciphertext, stored byte for byte; no record.
2. ``POST /orders/{id}/deliverable`` (:func:`confirm`): the provider-signed
   record, checked against the order, its listing version and the stored upload,
   then committed through the one write path with the order's move placed →
   delivered (``delivered_at``, ``acceptance_deadline``).
3. ``GET /orders/{id}/delivery`` (:func:`latest`): the buyer reads the latest
   ``delivery.issued`` of its order, in either custody, as logged.

The exchange checks what it can without the plaintext: who signed, which order,
rows and range-proof parameters, the plaintext digest of a whole-dataset
delivery, and the ciphertext it holds. The buyer checks the rest (decryption,
plaintext, range proof) with the provider's signature in hand.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from exchange.content.deliverables import DeliverableStore, StoredDeliverable
from exchange.delivery.errors import (
    AlreadyDeliveredError,
    DeliverableMissingError,
    DeliveryMismatchError,
    ExchangeCustodyError,
    NotDeliveredError,
    NotProviderError,
    OrderClosedError,
)
from exchange.delivery.schemas import DeliveryRecord
from exchange.listings.models import ListingProvider, ListingVersion
from exchange.log.models import LogEntry
from exchange.log.queries import entry_record
from exchange.orders.models import Order, OrderDelivery, OrderState
from exchange.orders.schemas import OrderChanged
from exchange.orders.service import OrderNotFoundError, order_public
from exchange.participants.models import Principal
from exchange.records import InvalidPayloadError, SignedAction, commit_with_record, log_receipt
from ledger.protocol.delivery import ProviderDelivery
from ledger.records import RecordFormatError
from ledger.sm2 import SM2PrivateKey

__all__ = ["confirm", "delivered_upload", "latest", "upload_target"]


def _is_provider(session: Session, order: Order, key_id: str) -> bool:
    return session.get(ListingProvider, (order.listing_id, key_id)) is not None


def _check_open(order: Order) -> None:
    """Provider custody, and the order still awaits its delivery."""
    if order.custody != "provider":
        raise ExchangeCustodyError(
            f"listing {order.listing_id} is in exchange custody: the exchange delivers its "
            f"orders (POST /orders/{order.id}/delivery)"
        )
    if order.state == OrderState.REFUNDED or order.revoked_at is not None:
        raise OrderClosedError(f"order {order.id} was refunded; nothing more is delivered")
    if order.state != OrderState.PLACED:
        raise AlreadyDeliveredError(f"order {order.id} was delivered already")


def upload_target(session: Session, principal: Principal, order_id: str) -> None:
    """Refuse an upload of the order's deliverable unless ``principal`` is a provider
    of its listing (404 ``order_not_found`` otherwise, as if there were no order),
    the listing is in provider custody (409 ``exchange_custody``) and the order
    awaits delivery (409 ``order_closed`` / ``already_delivered``)."""
    order = session.get(Order, order_id)
    if order is None or not _is_provider(session, order, principal.key_id):
        raise OrderNotFoundError(f"no order {order_id}")
    _check_open(order)


def _parse(action: SignedAction, order_id: str) -> ProviderDelivery:
    try:
        delivery = ProviderDelivery.from_dict(action.payload)
    except RecordFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None
    if delivery.order_id != order_id:
        raise InvalidPayloadError(
            f"payload.order_id: the record names order {delivery.order_id}, the request {order_id}"
        )
    return delivery


def _mismatch(field: str, expected: object, actual: object) -> DeliveryMismatchError:
    return DeliveryMismatchError(f"payload.{field} is {actual!r}; the order's is {expected!r}")


def _check_describes(
    delivery: ProviderDelivery, order: Order, version: ListingVersion | None
) -> None:
    """The payload is about this order, its buyer and the version it bought, and
    cuts what was bought (422 ``delivery_mismatch`` naming the field)."""
    for field, expected, actual in (
        ("listing_id", order.listing_id, delivery.listing_id),
        ("version", order.version, delivery.version),
        ("buyer", order.buyer_key_id, delivery.buyer),
    ):
        if expected != actual:
            raise _mismatch(field, expected, actual)
    rows = order.terms.get("rows")
    if rows is None:
        if delivery.rows is not None:
            raise _mismatch("rows", None, delivery.rows.to_dict())
        if delivery.plaintext_sm3 != order.content_digest:
            raise _mismatch("plaintext_sm3", order.content_digest, delivery.plaintext_sm3)
        return
    wanted = {"offset": order.terms.get("row_offset", 0), "count": rows}
    if delivery.rows is None or delivery.rows.to_dict() != wanted:
        raise _mismatch("rows", wanted, None if delivery.rows is None else delivery.rows.to_dict())
    assert delivery.range_proof is not None  # (parsed together with rows)
    row_root = None if version is None else version.row_root
    row_count = None if version is None else version.row_count
    if delivery.range_proof.row_root != row_root:
        raise _mismatch("range_proof.row_root", row_root, delivery.range_proof.row_root)
    if delivery.range_proof.tree_size != row_count:
        raise _mismatch("range_proof.tree_size", row_count, delivery.range_proof.tree_size)


def _check_upload(store: DeliverableStore, delivery: ProviderDelivery) -> StoredDeliverable:
    upload = store.find(delivery.order_id, delivery.ciphertext_sm3)
    if upload is None:
        uploads = store.uploads(delivery.order_id)
        if not uploads:
            raise DeliverableMissingError(
                f"no deliverable was uploaded for order {delivery.order_id}: PUT "
                f"/orders/{delivery.order_id}/deliverable first"
            )
        raise DeliveryMismatchError(
            f"payload.ciphertext_sm3 is {delivery.ciphertext_sm3}; the uploaded "
            f"deliverable's is {uploads[0].sm3_hex}"
        )
    if upload.size != delivery.ciphertext_size:
        raise _mismatch("ciphertext_size", upload.size, delivery.ciphertext_size)
    return upload


def confirm(
    session: Session,
    store: DeliverableStore,
    log_key: SM2PrivateKey,
    action: SignedAction,
    order_id: str,
    *,
    acceptance_window_s: int,
    now_ms: int,
) -> OrderChanged:
    """Apply a checked provider-signed ``delivery.issued`` (see the module docstring).

    Refusals, in this order: 422 ``invalid_payload``; 404 ``order_not_found``;
    403 ``not_a_provider``; 409 ``exchange_custody``, ``order_closed``,
    ``already_delivered``; 422 ``delivery_mismatch``; 409 ``deliverable_missing``;
    and at commit 409 ``duplicate_record`` / ``concurrent_update``."""
    delivery = _parse(action, order_id)
    order = session.get(Order, order_id)
    if order is None:
        raise OrderNotFoundError(f"no order {order_id}")
    if not _is_provider(session, order, action.signed.record.actor):
        raise NotProviderError(f"only a provider of listing {order.listing_id} delivers its orders")
    _check_open(order)
    _check_describes(
        delivery, order, session.get(ListingVersion, (order.listing_id, order.version))
    )
    upload = _check_upload(store, delivery)
    leaf_hash = action.submission.leaf_hash.hex()

    def stage() -> None:
        order.state = OrderState.DELIVERED.value
        order.delivered_at = now_ms
        order.acceptance_deadline = now_ms + acceptance_window_s * 1000
        order.updated_at = now_ms
        session.add(order)
        session.add(OrderDelivery(leaf_hash=leaf_hash, order_id=order.id))

    _, accepted = commit_with_record(session, action, log_key, stage)
    store.keep_only(order.id, upload.sm3_hex)
    return OrderChanged(order=order_public(order), log=log_receipt(accepted))


def _latest_entry(session: Session, order_id: str) -> LogEntry | None:
    hashes = session.execute(
        select(col(OrderDelivery.leaf_hash)).where(col(OrderDelivery.order_id) == order_id)
    ).scalars()
    leaves = [bytes.fromhex(leaf_hash) for leaf_hash in hashes]
    if not leaves:
        return None
    return (
        session.execute(
            select(LogEntry)
            .where(col(LogEntry.leaf_hash).in_(leaves))
            .order_by(col(LogEntry.index).desc())
            .limit(1)
        )
        .scalars()
        .first()
    )


def latest(
    session: Session, principal: Principal, order_id: str, download_path: str
) -> DeliveryRecord:
    """The latest ``delivery.issued`` of the caller's order (404 ``order_not_found``
    for anyone but its buyer; 409 ``not_delivered`` before the first)."""
    order = session.get(Order, order_id)
    if order is None or order.buyer_key_id != principal.key_id:
        raise OrderNotFoundError(f"no order {order_id}")
    entry = _latest_entry(session, order_id)
    if entry is None:
        raise NotDeliveredError(f"order {order_id} has not been delivered yet")
    return DeliveryRecord(
        custody=order.custody,
        record=entry_record(entry),
        log_index=entry.index,
        download_path=download_path,
    )


def delivered_upload(
    session: Session, store: DeliverableStore, order: Order
) -> StoredDeliverable | None:
    """The stored ciphertext the order's provider-signed delivery names, if present."""
    entry = _latest_entry(session, order.id)
    if entry is None:
        return None
    payload = entry_record(entry)["record"]["payload"]
    return store.find(order.id, str(payload.get("ciphertext_sm3", "")))
