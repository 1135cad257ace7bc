"""Quotes and order placement with escrow; limited offers never oversell.

Placing an order (``order.placed``, signed by the buyer) checks the quote
(:func:`exchange.quotes.verify_quote`: the exchange's signature, the buyer,
the listing's current version, content digest and price, unexpired), then, in
ONE transaction with the log record (``commit_with_record`` +
:func:`exchange.accounts.service.at_flush`):

1. marks the quote used: conditional insert into ``used_quote``
   (409 ``quote_used`` if it is there);
2. re-reads the listing: still published at that version (409 ``listing_not_published``)
   and none of its providers suspended (409 ``provider_suspended``), its
   registration certificate neither cancelled nor expired (409
   ``certificate_cancelled`` / ``certificate_expired``, docs/certificates.md);
3. for a limited offer, creates its seat counter if missing (``INSERT … ON
   CONFLICT DO NOTHING``), then ``UPDATE offer_seats SET sold = sold + 1 WHERE …
   AND sold < limit``; no row updated → 409 ``sold_out``;
4. creates the buyer's account if missing (the same way), then moves the amount
   from available to held: ``UPDATE account … WHERE available >= amount``; no row
   → 402 ``insufficient_funds``;
5. inserts the order, the ``escrow_hold`` movement and the idempotency key.

A renewal (``renews``: an earlier order id) must name the same buyer's
subscription to the same listing, neither revoked nor refunded nor already
renewed by a live order (409 ``not_renewable``, re-checked inside the
transaction); its paid period starts at ``max(now, previous.access_expires_at)``.

The order's ``declaration`` (purpose, processing region, legal basis) is checked
against the listing version's usage policy and the cross-border rule
(:mod:`exchange.policies.service`: 422 ``policy_violation`` naming the clause); the
quote must carry that policy's digest; the cross-border assessment is re-read in
the transaction.

A listing any of whose providers (owner or co-provider) is suspended is not for
sale: no quote, no order (409 ``provider_suspended``); orders placed before the
suspension go on (delivery, acceptance, settlement, which pays every provider
its share). See docs/money.md.

Any refusal rolls back everything, the log entry included. Cheap pre-checks
before the transaction give the same codes early; the conditional statements
are what make them hold under concurrency (on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from exchange.accounts.models import Account, MovementKind
from exchange.accounts.service import (
    InsufficientFundsError,
    account_after,
    account_public,
    at_flush,
    hold,
    movement,
    now_ms,
    open_account,
    receipt_for,
)
from exchange.certificates.service import check_orderable
from exchange.errors import ConflictError, ExchangeError, NotFoundError
from exchange.idempotency import IdempotencyKey, Idempotent
from exchange.listings.models import Listing, ListingProvider, ListingState
from exchange.listings.service import ListingNotFoundError
from exchange.orders.assessment import is_assessment
from exchange.orders.models import OfferSeats, Order, OrderState, UsedQuote
from exchange.orders.schemas import (
    OrderPage,
    OrderPayload,
    OrderPlaced,
    OrderPublic,
    SettlementPublic,
    TermsIn,
)
from exchange.orders.settle import settlements_of
from exchange.participants.models import Participant, ParticipantStatus, Principal, Role
from exchange.policies import service as policies
from exchange.pricing import (
    ComputationAllowance,
    SubscriptionPricing,
    TermsError,
    computation_allowance,
    epsilon_text,
    parse_pricing,
    price,
)
from exchange.quotes import Quote, QuoteTerms, issue_quote, parse_quote, quote_terms, verify_quote
from exchange.records import SignedAction, commit_with_record, log_receipt, payload_of
from ledger.computation.offer import ComputationOffer
from ledger.protocol.policy import policy_of
from ledger.sm2 import SM2PrivateKey

__all__ = ["get_order", "issue", "list_orders", "place", "rebuild_placed"]

DAY_MS = 86_400_000


class ListingNotPublishedError(ConflictError):
    code = "listing_not_published"


class ProviderSuspendedError(ConflictError):
    code = "provider_suspended"


class OrderNotFoundError(NotFoundError):
    code = "order_not_found"


class OrderExistsError(ConflictError):
    code = "order_exists"


class QuoteUsedError(ConflictError):
    code = "quote_used"


class SoldOutError(ConflictError):
    code = "sold_out"


class NotRenewableError(ConflictError):
    code = "not_renewable"


class InvalidRoleFilterError(ExchangeError):
    status = 422
    code = "invalid_request"


# --------------------------------------------------------------------------- quotes


def _published(session: Session, listing_id: str, principal: Principal | None) -> Listing:
    row = session.get(Listing, listing_id)
    visible = row is not None and (
        row.state in (ListingState.PUBLISHED, ListingState.DELISTED)
        or (principal is not None and principal.is_operator)
        or (
            principal is not None
            and session.get(ListingProvider, (listing_id, principal.key_id)) is not None
        )
    )
    if row is None or not visible:
        raise ListingNotFoundError(f"no listing {listing_id}")
    if row.state != ListingState.PUBLISHED:
        raise ListingNotPublishedError(f"listing {listing_id} is {row.state}, not published")
    return row


# The statements every order runs, built once (building a SQLAlchemy statement costs
# several times what executing a built one does; the committer runs these per order).
_SUSPENDED_PROVIDER: Final = (
    select(col(ListingProvider.provider_key_id))
    .join(Participant, col(Participant.key_id) == col(ListingProvider.provider_key_id))
    .where(
        col(ListingProvider.listing_id) == bindparam("listing_id"),
        col(Participant.status) == ParticipantStatus.SUSPENDED.value,
    )
    .order_by(col(ListingProvider.position))
    .limit(1)
)
_LISTING_STATE: Final = select(col(Listing.state), col(Listing.version)).where(
    col(Listing.id) == bindparam("listing_id")
)
_MARK_QUOTE_USED: Final = {
    "postgresql": pg_insert(UsedQuote)
    .on_conflict_do_nothing(index_elements=["quote_id"])
    .returning(col(UsedQuote.quote_id)),
    "sqlite": sqlite_insert(UsedQuote)
    .on_conflict_do_nothing(index_elements=["quote_id"])
    .returning(col(UsedQuote.quote_id)),
}
_ORDER_EXISTS: Final = select(col(Order.id)).where(col(Order.id) == bindparam("order_id"))
_QUOTE_USED: Final = select(col(UsedQuote.quote_id)).where(
    col(UsedQuote.quote_id) == bindparam("quote_id")
)
_AVAILABLE: Final = select(col(Account.available)).where(col(Account.key_id) == bindparam("key_id"))


def _check_providers_active(connection: Connection, listing_id: str) -> None:
    """Refuse (409 ``provider_suspended``) when a provider of the listing is suspended.

    Run inside the order's transaction too: a suspension commits under the same
    log write lock, so an order never slips past one committed before it."""
    suspended = connection.execute(_SUSPENDED_PROVIDER, {"listing_id": listing_id}).first()
    if suspended is not None:
        raise ProviderSuspendedError(
            f"listing {listing_id} is not for sale: its provider {suspended[0]} is suspended"
        )


def _seats_left(session: Session, listing: Listing, limit: int | None) -> None:
    if limit is None:
        return
    seats = session.get(OfferSeats, (listing.id, listing.version))
    if seats is not None and seats.sold >= limit:
        raise SoldOutError(f"all {limit} seat(s) of listing {listing.id} are sold")


def _computation_terms(
    listing: Listing, *, rows: int | None, periods: int | None, queries: int | None
) -> ComputationAllowance:
    """The price and allowance of a computation order on the listing's current version."""
    if listing.computation is None:
        raise TermsError(f"listing {listing.id} version {listing.version} offers no computation")
    if rows is not None or periods is not None:
        raise TermsError("a computation order buys queries, not rows or periods")
    offer = ComputationOffer.from_dict(listing.computation)
    return computation_allowance(offer, queries=queries)


def _allowance(
    listing: Listing, pricing_terms: QuoteTerms | TermsIn
) -> ComputationAllowance | None:
    if pricing_terms.computation:
        return _computation_terms(
            listing,
            rows=pricing_terms.rows,
            periods=pricing_terms.periods,
            queries=pricing_terms.queries,
        )
    if pricing_terms.queries is not None:
        raise TermsError("queries apply only to a computation order (computation: true)")
    return None


def issue(
    session: Session,
    principal: Principal,
    listing_id: str,
    terms_in: TermsIn,
    log_key: SM2PrivateKey,
    ttl_s: int,
) -> Quote:
    """A quote for ``principal`` on the listing's current version (see exchange.quotes)."""
    assessment = is_assessment(
        principal.role,
        principal.status,
        terms_in.purpose,
        rows=terms_in.rows,
        periods=terms_in.periods,
        computation=bool(terms_in.computation or terms_in.queries),
    )
    listing = _published(session, listing_id, principal)
    _check_providers_active(session.connection(), listing.id)
    check_orderable(session.connection(), listing.id, listing.version, now_ms())
    pricing = parse_pricing(listing.pricing)
    licence = listing.licence or "standard"
    if terms_in.licence is not None and terms_in.licence != licence:
        raise TermsError(f"this listing is offered under {licence!r} only")
    allowance = None if assessment else _allowance(listing, terms_in)
    row_offset = _row_offset(terms_in)
    if assessment:
        amount = 0
    elif allowance is not None:
        amount = allowance.amount
    else:
        amount = price(pricing, rows=terms_in.rows, periods=terms_in.periods)
        _check_rows_exist(listing, terms_in.rows, row_offset)
        _seats_left(session, listing, pricing.seat_limit)
    return issue_quote(
        log_key,
        listing_id=listing.id,
        listing_version=listing.version,
        content_digest=listing.content_digest,
        buyer_key_id=principal.key_id,
        terms=quote_terms(
            rows=terms_in.rows,
            periods=terms_in.periods,
            licence=licence,
            row_offset=row_offset,
            computation=bool(terms_in.computation),
            queries=terms_in.queries,
            purpose=terms_in.purpose,
        ),
        amount=amount,
        now=now_ms(),
        policy_digest=policy_of(listing.policy).digest(),
        ttl_ms=ttl_s * 1000,
    )


def _row_offset(terms_in: TermsIn) -> int | None:
    """The first row bought: 0 unless given for a quantity order; ``None`` otherwise."""
    if terms_in.rows is None:
        if terms_in.row_offset is not None:
            raise TermsError("row_offset applies only together with rows")
        return None
    return terms_in.row_offset or 0


def _check_rows_exist(listing: Listing, rows: int | None, row_offset: int | None) -> None:
    if rows is None:
        return
    end = (row_offset or 0) + rows
    if end > listing.row_count:
        raise TermsError(
            f"rows [{row_offset or 0}, {end}) go past the {listing.row_count} rows of "
            f"listing {listing.id} version {listing.version}"
        )


# --------------------------------------------------------------------------- orders


def order_public(row: Order, settlement: SettlementPublic | None = None) -> OrderPublic:
    """The order's JSON; ``settlement`` is its breakdown once settled
    (:func:`exchange.orders.settle.settlements_of`)."""
    return OrderPublic(
        id=row.id,
        buyer=row.buyer_key_id,
        listing_id=row.listing_id,
        version=row.version,
        content_digest=row.content_digest,
        quote_id=row.quote_id,
        terms=row.terms,
        amount=row.amount,
        escrow=row.escrow,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
        acceptance_deadline=row.acceptance_deadline,
        access_expires_at=row.access_expires_at,
        placed_leaf_hash=row.placed_leaf_hash,
        delivered_at=row.delivered_at,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
        renews_order_id=row.renews_order_id,
        rows=row.terms.get("rows"),
        row_offset=_ordered_offset(row.terms),
        custody=row.custody,
        delivery_deadline=row.delivery_deadline if row.state == OrderState.PLACED else None,
        queries_left=row.queries_left,
        epsilon_left=None if row.epsilon_left is None else epsilon_text(row.epsilon_left),
        settlement=settlement,
        declaration=row.declaration,
        policy_digest=row.policy_digest,
        use_until=row.use_until,
    )


def _ordered_offset(terms: dict[str, object]) -> int | None:
    if terms.get("rows") is None:
        return None
    offset = terms.get("row_offset", 0)  # quotes from before row_offset start at row 0
    return offset if isinstance(offset, int) else 0


def _mark_quote_used(connection: Connection, quote_id: str, order_id: str) -> None:
    result = connection.execute(
        _MARK_QUOTE_USED[connection.dialect.name], {"quote_id": quote_id, "order_id": order_id}
    )
    if result.first() is None:  # (rowcount of ON CONFLICT DO NOTHING is -1 on psycopg)
        raise QuoteUsedError(f"quote {quote_id} was already used for an order")


def _take_seat(connection: Connection, listing_id: str, version: int, limit: int) -> None:
    """Count one more sale of the offer, unless all ``limit`` seats are sold. Its
    counter is created here, in the order's transaction: a refused first order of
    the offer leaves none behind."""
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(
        insert(OfferSeats)
        .values(listing_id=listing_id, version=version, sold=0)
        .on_conflict_do_nothing(index_elements=["listing_id", "version"])
    )
    result = connection.execute(
        update(OfferSeats)
        .where(
            col(OfferSeats.listing_id) == listing_id,
            col(OfferSeats.version) == version,
            col(OfferSeats.sold) < limit,
        )
        .values(sold=col(OfferSeats.sold) + 1)
    )
    if result.rowcount != 1:
        raise SoldOutError(f"all {limit} seat(s) of listing {listing_id} are sold")


def _renewed(session: Session, previous_id: str, buyer: str, listing_id: str) -> Order:
    """The order a renewal extends, if it may be renewed (else 409 ``not_renewable``)."""
    previous = session.get(Order, previous_id)
    if previous is None or previous.buyer_key_id != buyer:
        raise NotRenewableError(f"you have no order {previous_id} to renew")
    _check_renewable(
        previous.id,
        listing_id=previous.listing_id,
        expires=previous.access_expires_at,
        revoked=previous.revoked_at,
        state=previous.state,
        wanted_listing=listing_id,
    )
    return previous


def _check_renewable(
    previous_id: str,
    *,
    listing_id: str,
    expires: int | None,
    revoked: int | None,
    state: str,
    wanted_listing: str,
) -> None:
    if listing_id != wanted_listing:
        raise NotRenewableError(f"order {previous_id} is for another listing")
    if expires is None:
        raise NotRenewableError(f"order {previous_id} is not a subscription")
    if revoked is not None:
        raise NotRenewableError(f"access to order {previous_id} was revoked")
    if state == OrderState.REFUNDED:
        raise NotRenewableError(f"order {previous_id} was refunded")


def _recheck_renewal(connection: Connection, previous_id: str, order_id: str, listing: str) -> None:
    """Inside the order's transaction (the log's write lock is held): the renewed
    order was not revoked or refunded meanwhile, and no other live order renews it."""
    row = connection.execute(
        select(
            col(Order.listing_id),
            col(Order.access_expires_at),
            col(Order.revoked_at),
            col(Order.state),
        ).where(col(Order.id) == previous_id)
    ).one()
    _check_renewable(
        previous_id,
        listing_id=row[0],
        expires=row[1],
        revoked=row[2],
        state=row[3],
        wanted_listing=listing,
    )
    _not_renewed_yet(connection, previous_id, order_id)


def _not_renewed_yet(connection: Connection, previous_id: str, order_id: str) -> None:
    other = connection.execute(
        select(col(Order.id)).where(
            col(Order.renews_order_id) == previous_id,
            col(Order.id) != order_id,
            col(Order.state) != OrderState.REFUNDED.value,
        )
    ).first()
    if other is not None:
        raise NotRenewableError(
            f"order {previous_id} is already renewed by order {other[0]}; renew that one"
        )


def place(
    session: Session,
    action: SignedAction,
    log_key: SM2PrivateKey,
    idempotent: Idempotent,
) -> OrderPlaced:
    """Apply a checked ``order.placed`` action (see the module docstring)."""
    payload = payload_of(action, OrderPayload)
    quote = parse_quote(payload.quote, path="payload.quote")
    declaration = policies.declaration_of(payload.declaration)
    buyer = action.signed.record.actor
    listing = session.get(Listing, quote.listing_id)
    if listing is None or listing.state not in (ListingState.PUBLISHED, ListingState.DELISTED):
        raise ListingNotFoundError(f"no listing {quote.listing_id}")
    if listing.state != ListingState.PUBLISHED:
        raise ListingNotPublishedError(f"listing {listing.id} is {listing.state}, not published")
    _check_providers_active(session.connection(), listing.id)
    pricing = parse_pricing(listing.pricing)
    now = now_ms()
    check_orderable(session.connection(), listing.id, listing.version, now)
    assessment = _assessment_order(session, buyer, quote.terms)
    allowance = None if assessment else _allowance(listing, quote.terms)
    if assessment:
        amount = 0
    elif allowance is not None:
        amount = allowance.amount
    else:
        amount = price(pricing, rows=quote.terms.rows, periods=quote.terms.periods)
        _check_rows_exist(listing, quote.terms.rows, quote.terms.row_offset)
    verify_quote(
        log_key.public_key(),
        quote,
        now=now,
        buyer_key_id=buyer,
        listing_id=listing.id,
        version=listing.version,
        amount=amount,
        content_digest=listing.content_digest,
        policy_digest=policy_of(listing.policy).digest(),
    )
    subscribed = allowance is None and isinstance(pricing, SubscriptionPricing)
    agreement = policies.check_order(
        session,
        listing,
        buyer,
        declaration,
        requested_days=_days_bought(pricing, quote.terms.periods) if subscribed else None,
        now=now,
    )
    connection = session.connection()
    if connection.execute(_ORDER_EXISTS, {"order_id": payload.order_id}).first() is not None:
        raise OrderExistsError(f"order {payload.order_id} exists")
    previous = None
    if payload.renews is not None:
        if assessment or allowance is not None or not isinstance(pricing, SubscriptionPricing):
            raise NotRenewableError(f"listing {listing.id} is not sold by subscription")
        previous = _renewed(session, payload.renews, buyer, listing.id)
        _not_renewed_yet(session.connection(), previous.id, payload.order_id)
    if connection.execute(_QUOTE_USED, {"quote_id": quote.quote_id}).first() is not None:
        raise QuoteUsedError(f"quote {quote.quote_id} was already used for an order")
    limit = None if assessment or allowance is not None else pricing.seat_limit
    _seats_left(session, listing, limit)
    available = connection.execute(_AVAILABLE, {"key_id": buyer}).scalar()
    if amount > (available or 0):
        raise InsufficientFundsError(f"the order costs {amount} fen; your balance is lower")

    leaf_hash = action.submission.leaf_hash
    expires = None
    if not assessment and allowance is None and isinstance(pricing, SubscriptionPricing):
        assert quote.terms.periods is not None
        start = now
        if previous is not None and previous.access_expires_at is not None:
            start = max(now, previous.access_expires_at)
        expires = start + quote.terms.periods * pricing.period_days * DAY_MS
    renews = None if previous is None else previous.id
    access_days = agreement.policy.access_days
    order = Order(
        id=payload.order_id,
        buyer_key_id=buyer,
        listing_id=listing.id,
        version=listing.version,
        content_digest=listing.content_digest,
        quote_id=quote.quote_id,
        terms=quote.terms.to_dict(),
        amount=amount,
        escrow=amount,
        state=OrderState.PLACED.value,
        created_at=now,
        updated_at=now,
        access_expires_at=expires,
        placed_leaf_hash=leaf_hash.hex(),
        renews_order_id=renews,
        custody=listing.custody,
        delivery_deadline=now + listing.delivery_window_s * 1000,
        queries_left=None if allowance is None else allowance.queries_left,
        epsilon_left=None if allowance is None else allowance.epsilon_left,
        declaration=declaration.to_dict(),
        policy_digest=agreement.digest,
        use_until=None if access_days is None else now + access_days * DAY_MS,
    )
    listing_id, version = listing.id, listing.version

    def stage() -> Order:
        session.add(order)
        if amount > 0:
            session.add(
                movement(
                    buyer,
                    MovementKind.ESCROW_HOLD,
                    amount,
                    leaf_hash=leaf_hash,
                    order_id=order.id,
                    reference=f"order {order.id}",
                )
            )
        idempotent.stage(session, resource_id=order.id, leaf_hash=leaf_hash, status_code=201)
        return order

    def in_transaction(connection: Connection) -> None:
        _mark_quote_used(connection, quote.quote_id, order.id)
        state = connection.execute(_LISTING_STATE, {"listing_id": listing_id}).one()
        if state[0] != ListingState.PUBLISHED or state[1] != version:
            raise ListingNotPublishedError(f"listing {listing_id} changed; request a new quote")
        _check_providers_active(connection, listing_id)
        policies.recheck_cross_border(connection, listing, buyer, agreement, now)
        check_orderable(connection, listing_id, version, now)
        if limit is not None:
            _take_seat(connection, listing_id, version, limit)
        if renews is not None:
            _recheck_renewal(connection, renews, order.id, listing_id)
        open_account(connection, buyer)
        if amount > 0:
            hold(connection, buyer, amount)

    with at_flush(session, in_transaction):
        _, accepted = commit_with_record(session, action, log_key, stage)
    return OrderPlaced(
        order=order_public(order),
        account=account_public(session, buyer),
        log=log_receipt(accepted),
    )


def _assessment_order(session: Session, buyer: str, terms: QuoteTerms) -> bool:
    """Whether the order is an assessment (exchange.orders.assessment), its buyer's
    role and status read again: an assessor suspended since the quote is refused."""
    row = session.get(Participant, buyer)
    if row is None:  # pragma: no cover - an authenticated participant is registered
        return False
    return is_assessment(
        Role(row.role),
        ParticipantStatus(row.status),
        terms.purpose,
        rows=terms.rows,
        periods=terms.periods,
        computation=terms.computation,
    )


def _days_bought(pricing: object, periods: int | None) -> int:
    """The days of use a subscription order buys (periods × period length)."""
    assert isinstance(pricing, SubscriptionPricing) and periods is not None
    return periods * pricing.period_days


def rebuild_placed(session: Session, row: IdempotencyKey) -> OrderPlaced:
    """The response of an order placed under an idempotency key whose response
    was not stored (a crash right after the commit): the order as it was placed
    and the buyer's balance then, whatever happened to them since (delivery,
    settlement, revocation change only the columns reset here)."""
    order = session.get(Order, row.resource_id)
    assert order is not None
    placed = order_public(order).model_copy(
        update={
            "escrow": order.amount,
            "state": OrderState.PLACED.value,
            "updated_at": order.created_at,
            "acceptance_deadline": None,
            "delivery_deadline": order.delivery_deadline,
            "delivered_at": None,
            "revoked_at": None,
            "revocation_reason": None,
        }
    )
    return OrderPlaced(
        order=placed,
        account=account_after(session, order.buyer_key_id, row.leaf_hash),
        log=receipt_for(session, row.leaf_hash),
    )


def _can_see(session: Session, order: Order, principal: Principal) -> bool:
    if principal.is_operator or order.buyer_key_id == principal.key_id:
        return True
    return session.get(ListingProvider, (order.listing_id, principal.key_id)) is not None


def get_order(session: Session, principal: Principal, order_id: str) -> OrderPublic:
    """The buyer, the listing's providers and operators see an order; others get 404."""
    row = session.get(Order, order_id)
    if row is None or not _can_see(session, row, principal):
        raise OrderNotFoundError(f"no order {order_id}")
    return order_public(row, settlements_of(session, [row]).get(row.id))


def list_orders(
    session: Session, principal: Principal, *, role: str, limit: int, offset: int
) -> OrderPage:
    """Own orders only: as ``buyer`` (placed by the caller) or as ``provider``
    (of listings the caller provides). Newest first."""
    query = select(Order)
    if role == "buyer":
        query = query.where(col(Order.buyer_key_id) == principal.key_id)
    else:
        own = select(col(ListingProvider.listing_id)).where(
            col(ListingProvider.provider_key_id) == principal.key_id
        )
        query = query.where(col(Order.listing_id).in_(own))
    query = query.order_by(col(Order.created_at).desc(), col(Order.id)).offset(offset)
    rows = session.execute(query.limit(limit + 1)).scalars().all()
    page = rows[:limit]
    settled = settlements_of(session, page)
    return OrderPage(
        items=[order_public(r, settled.get(r.id)) for r in page],
        next_offset=offset + limit if len(rows) > limit else None,
    )
