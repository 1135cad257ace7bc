"""Computations: the buyer's request, the provider's result upload and answer, and
reading them (docs/computations.md).

=======================  ========================  ==========================
record / call            who                       effect
=======================  ========================  ==========================
computation.requested    the order's buyer         pending; one query (and its
                                                   ε) reserved from the order
PUT …/result             a provider of the listing the encrypted result stored
computation.completed    a provider of the listing completed; the order's first
                                                   answer delivers it
computation.refused      a provider of the listing refused; the reservation
                                                   given back (nothing charged)
=======================  ========================  ==========================

Every record goes through the one write path (:func:`exchange.records.commit_with_record`)
with its state change; the allowance moves by conditional statements in the same
transaction (:mod:`exchange.computations.allowance`). The exchange validates the
SQL early with the one validator (:func:`ledger.computation.validate.validate`)
against the offer of the version the order bought; the provider's agent
validates again, authoritatively, before running it.

A query is a use of the data under its order's agreement: the computation order
declared its purpose and processing region and was checked against the listing's
usage policy when placed (docs/policies.md), so a request carries no declaration
of its own; once the policy's days of use are over (the order's ``use_until``)
requests are refused (403 ``access_expired``).
"""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlmodel import Session, col

from exchange.accounts.service import now_ms
from exchange.computations.allowance import (
    check_allowance,
    check_answerable,
    check_open,
    deliver_first,
    give_back,
    reserve,
)
from exchange.computations.errors import (
    ComputationClosedError,
    ComputationExistsError,
    ComputationMismatchError,
    ComputationNotFoundError,
    NotCompletedError,
    NotComputationOrderError,
    QueryRefusedError,
    ResultMissingError,
)
from exchange.computations.models import Computation, ComputationState
from exchange.computations.results import ResultStore, StoredResult
from exchange.computations.schemas import (
    ComputationAnswered,
    ComputationPage,
    ComputationPublic,
    ComputationRequested,
    LoggedRecord,
)
from exchange.delivery.errors import NotProviderError
from exchange.listings.models import ListingProvider, ListingVersion
from exchange.log.batch import run_at_commit
from exchange.log.models import LogEntry
from exchange.log.queries import entry_record
from exchange.orders.access import AccessExpiredError
from exchange.orders.models import Order
from exchange.orders.service import OrderNotFoundError
from exchange.participants.models import Principal
from exchange.pricing import epsilon_text, micro_epsilon
from exchange.records import InvalidPayloadError, SignedAction, commit_with_record, log_receipt
from ledger.computation.offer import ComputationOffer
from ledger.computation.validate import QueryRefusedError as ValidatorRefusal
from ledger.computation.validate import validate
from ledger.protocol.computation import (
    COMPUTATION_COMPLETED,
    ComputationCompleted,
    ComputationRefused,
    ComputationRequest,
)
from ledger.records import RecordFormatError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

__all__ = [
    "answer",
    "get_computation",
    "list_computations",
    "request",
    "result_for_buyer",
    "upload_target",
]


# --------------------------------------------------------------------------- reading


def _records(session: Session, row: Computation) -> list[LoggedRecord]:
    hashes = [h for h in (row.requested_leaf_hash, row.answer_leaf_hash) if h is not None]
    entries = (
        session.execute(
            select(LogEntry)
            .where(col(LogEntry.leaf_hash).in_([bytes.fromhex(h) for h in hashes]))
            .order_by(col(LogEntry.index))
        )
        .scalars()
        .all()
    )
    return [LoggedRecord(index=e.index, record=entry_record(e)) for e in entries]


def computation_public(session: Session, row: Computation) -> ComputationPublic:
    return ComputationPublic(
        id=row.id,
        order_id=row.order_id,
        listing_id=row.listing_id,
        version=row.version,
        buyer=row.buyer_key_id,
        sql=row.sql,
        query_sm3=row.query_sm3,
        state=row.state,
        epsilon_reserved=epsilon_text(row.epsilon_reserved),
        requested_at=row.requested_at,
        answered_at=row.answered_at,
        reason=row.reason,
        result_sm3=row.result_sm3,
        ciphertext_sm3=row.ciphertext_sm3,
        ciphertext_size=row.ciphertext_size,
        rows_scanned=row.rows_scanned,
        records=_records(session, row),
    )


def _is_provider(session: Session, listing_id: str, key_id: str) -> bool:
    return session.get(ListingProvider, (listing_id, key_id)) is not None


def _visible(session: Session, row: Computation | Order, principal: Principal) -> bool:
    buyer = row.buyer_key_id
    return (
        principal.is_operator
        or buyer == principal.key_id
        or _is_provider(session, row.listing_id, principal.key_id)
    )


def get_computation(
    session: Session, principal: Principal, computation_id: str
) -> ComputationPublic:
    """The order's buyer, the listing's providers and operators see a computation;
    others get 404 ``computation_not_found``."""
    row = session.get(Computation, computation_id)
    if row is None or not _visible(session, row, principal):
        raise ComputationNotFoundError(f"no computation {computation_id}")
    return computation_public(session, row)


def list_computations(
    session: Session, principal: Principal, order_id: str, *, limit: int, offset: int
) -> ComputationPage:
    """An order's computations, newest first (for whoever may see the order)."""
    order = session.get(Order, order_id)
    if order is None or not _visible(session, order, principal):
        raise OrderNotFoundError(f"no order {order_id}")
    rows = (
        session.execute(
            select(Computation)
            .where(col(Computation.order_id) == order_id)
            .order_by(col(Computation.requested_at).desc(), col(Computation.id))
            .offset(offset)
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    return ComputationPage(
        items=[computation_public(session, row) for row in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )


def result_for_buyer(
    session: Session, store: ResultStore, principal: Principal, computation_id: str
) -> StoredResult:
    """The encrypted result of a completed computation, for the order's buyer only
    (404 for anyone else; 409 ``not_completed`` before)."""
    row = session.get(Computation, computation_id)
    if row is None or row.buyer_key_id != principal.key_id:
        raise ComputationNotFoundError(f"no computation {computation_id}")
    if row.state != ComputationState.COMPLETED or row.ciphertext_sm3 is None:
        raise NotCompletedError(f"computation {computation_id} is {row.state}, not completed")
    stored = store.find(row.id, row.ciphertext_sm3)
    if stored is None:  # the store lost a committed result: a fault of the exchange's
        raise RuntimeError(f"the result of computation {row.id} is missing from the store")
    return stored


# --------------------------------------------------------------------------- the buyer


def _offer_of(session: Session, order: Order) -> ComputationOffer:
    version = session.get(ListingVersion, (order.listing_id, order.version))
    if version is None or version.computation is None or not order.terms.get("computation"):
        raise NotComputationOrderError(f"order {order.id} did not buy computation")
    return ComputationOffer.from_dict(version.computation)


def _query_cost(offer: ComputationOffer) -> int:
    return 0 if offer.privacy is None else micro_epsilon(offer.privacy.epsilon_per_query)


def request(session: Session, action: SignedAction, log_key: SM2PrivateKey) -> ComputationRequested:
    """Apply a checked ``computation.requested`` (see the module docstring)."""
    try:
        payload = ComputationRequest.from_dict(action.payload)
    except RecordFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None
    buyer = action.signed.record.actor
    order = session.get(Order, payload.order_id)
    if order is None or order.buyer_key_id != buyer:
        raise OrderNotFoundError(f"no order {payload.order_id}")
    offer = _offer_of(session, order)
    check_open(order.id, order.state, order.revoked_at)
    if order.use_until is not None and now_ms() >= order.use_until:
        raise AccessExpiredError(
            f"the days of use the usage policy allows for order {order.id} ended at "
            f"{order.use_until} (ms since the epoch)"
        )
    try:
        validate(payload.sql, offer)
    except ValidatorRefusal as exc:
        raise QueryRefusedError(exc.reason, exc.message) from None
    cost = _query_cost(offer)
    check_allowance(order.id, order.queries_left, order.epsilon_left, cost)
    if session.get(Computation, payload.computation_id) is not None:
        raise ComputationExistsError(f"computation {payload.computation_id} exists")
    row = Computation(
        id=payload.computation_id,
        order_id=order.id,
        listing_id=order.listing_id,
        version=order.version,
        buyer_key_id=buyer,
        sql=payload.sql,
        query_sm3=sm3(payload.sql_bytes()).hex(),
        state=ComputationState.PENDING.value,
        epsilon_reserved=cost,
        requested_at=now_ms(),
        requested_leaf_hash=action.submission.leaf_hash.hex(),
    )
    order_id = order.id

    def stage() -> Computation:
        session.add(row)
        return row

    with run_at_commit(session, lambda connection: reserve(connection, order_id, cost)):
        _, accepted = commit_with_record(session, action, log_key, stage)
    return ComputationRequested(
        computation=computation_public(session, row), log=log_receipt(accepted)
    )


# --------------------------------------------------------------------------- the provider


def _provided(session: Session, principal_key: str, computation_id: str) -> Computation:
    row = session.get(Computation, computation_id)
    if row is None:
        raise ComputationNotFoundError(f"no computation {computation_id}")
    if not _is_provider(session, row.listing_id, principal_key):
        raise NotProviderError(f"only the providers of listing {row.listing_id} answer it")
    return row


def _check_pending(row: Computation) -> None:
    if row.state != ComputationState.PENDING:
        raise ComputationClosedError(f"computation {row.id} is {row.state}; it takes no answer")


def upload_target(session: Session, principal: Principal, computation_id: str) -> None:
    """May ``principal`` upload the computation's result now? 404
    ``computation_not_found`` (none, or not a provider of its listing: as if it did
    not exist), 409 ``computation_closed`` (answered) or ``order_closed``."""
    row = session.get(Computation, computation_id)
    if row is None or not _is_provider(session, row.listing_id, principal.key_id):
        raise ComputationNotFoundError(f"no computation {computation_id}")
    _check_pending(row)
    order = session.get(Order, row.order_id)
    assert order is not None  # orders are never deleted
    check_answerable(order.id, order.state, order.revoked_at)


def _mismatch(field: str, expected: object, actual: object) -> ComputationMismatchError:
    return ComputationMismatchError(
        f"payload.{field} is {actual!r}; the computation's is {expected!r}"
    )


def _check_completed(row: Computation, payload: ComputationCompleted, store: ResultStore) -> None:
    if payload.query_sm3 != row.query_sm3:
        raise _mismatch("query_sm3", row.query_sm3, payload.query_sm3)
    try:
        spent = micro_epsilon(payload.epsilon)
    except ValueError:
        spent = -1
    if spent != row.epsilon_reserved:
        raise _mismatch("epsilon_spent", epsilon_text(row.epsilon_reserved), payload.epsilon_spent)
    stored = store.find(row.id, payload.ciphertext_sm3)
    if stored is None:
        if store.uploaded(row.id):
            raise ComputationMismatchError(
                f"payload.ciphertext_sm3: the uploaded result's SM3 is not {payload.ciphertext_sm3}"
            )
        raise ResultMissingError(f"upload the result of computation {row.id} first")
    if stored.size != payload.ciphertext_size:
        raise _mismatch("ciphertext_size", stored.size, payload.ciphertext_size)


def answer(
    session: Session,
    action: SignedAction,
    computation_id: str,
    store: ResultStore,
    log_key: SM2PrivateKey,
    acceptance_window_s: int,
) -> ComputationAnswered:
    """Apply a provider's checked ``computation.completed`` or ``computation.refused``."""
    provider = action.signed.record.actor
    row = _provided(session, provider, computation_id)
    completed = action.signed.record.type == COMPUTATION_COMPLETED
    parse = ComputationCompleted.from_dict if completed else ComputationRefused.from_dict
    try:
        payload = parse(action.payload)
    except RecordFormatError as exc:
        raise InvalidPayloadError(str(exc)) from None
    if payload.computation_id != computation_id:
        raise InvalidPayloadError(
            f"payload.computation_id: the record names computation {payload.computation_id}, "
            f"the request {computation_id}"
        )
    if payload.order_id != row.order_id:
        raise _mismatch("order_id", row.order_id, payload.order_id)
    _check_pending(row)
    order = session.get(Order, row.order_id)
    assert order is not None  # orders are never deleted
    now = now_ms()
    leaf_hash = action.submission.leaf_hash.hex()
    order_id, cost = row.order_id, row.epsilon_reserved
    if isinstance(payload, ComputationCompleted):
        check_answerable(order.id, order.state, order.revoked_at)
        _check_completed(row, payload, store)
        done = payload

        def stage() -> Computation:
            row.state = ComputationState.COMPLETED.value
            row.result_sm3 = done.result_sm3
            row.ciphertext_sm3 = done.ciphertext_sm3
            row.ciphertext_size = done.ciphertext_size
            row.rows_scanned = done.rows_scanned
            return _answered(row, now, leaf_hash)

        window_ms = acceptance_window_s * 1000

        def in_transaction(connection: Connection) -> None:
            deliver_first(connection, order_id, now, window_ms)

    else:
        refused = payload

        def stage() -> Computation:
            row.state = ComputationState.REFUSED.value
            row.reason = refused.reason
            return _answered(row, now, leaf_hash)

        def in_transaction(connection: Connection) -> None:
            give_back(connection, order_id, cost)

    with run_at_commit(session, in_transaction):
        _, accepted = commit_with_record(session, action, log_key, stage)
    return ComputationAnswered(
        computation=computation_public(session, row), log=log_receipt(accepted)
    )


def _answered(row: Computation, now: int, leaf_hash: str) -> Computation:
    row.answered_at = now
    row.answer_leaf_hash = leaf_hash
    return row
