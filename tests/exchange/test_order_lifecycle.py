"""Order lifecycle over a real uvicorn with signed requests: acceptance with
settlement, disputes and their resolution, auto-accept, revocation with refunds
and clawbacks, subscription renewal, and a race of accept against dispute (SQLite;
also PostgreSQL when ``TEST_POSTGRES_URL`` is set).

Orders are put in state ``delivered`` directly in the database
(:func:`test_lifecycle_support.mark_delivered`), as the delivery endpoint does."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlmodel import col
from test_auth_support import Exchange, error, running_exchange
from test_lifecycle_support import (
    DAY_MS,
    HOUR_MS,
    mark_delivered,
    now_ms,
    order_records,
    set_order,
)
from test_orders import BACKENDS, DECLARATION, balances, deposit, publish, quote

from exchange.accounts.models import Account, AccountMovement
from exchange.accounts.service import derived_balance
from exchange.books import assert_books_balance, check_books
from exchange.orders.lifecycle import AutoAcceptor, auto_accept_due
from exchange.orders.models import Order
from exchange.settlement import apportion
from ledger.protocol.accounts import PLATFORM_ACCOUNT
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

FEE_BP = 250
SUBSCRIPTION = {
    "model": "subscription",
    "price_per_period": 3_001,
    "period_days": 30,
    "max_periods": 12,
}


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    # The background auto-acceptor runs once at start (nothing is due then) and not
    # again during a test: the tests call auto_accept_due themselves.
    with running_exchange(
        live_server,
        tmp_path,
        request.param,
        platform_fee_bp=FEE_BP,
        auto_accept_interval_s=3600,
    ) as exchange:
        yield exchange


@dataclass
class Market:
    """A listing shared by two providers (6,000 / 4,000 bp) and a buyer."""

    ex: Exchange
    owner: SM2PrivateKey
    partner: SM2PrivateKey
    buyer: SM2PrivateKey
    listing_id: str

    @property
    def shares(self) -> dict[str, int]:
        return {self.owner.key_id(): 6_000, self.partner.key_id(): 4_000}

    def buy(self, buyer: SM2PrivateKey | None = None, **kw: Any) -> str:
        return buy(self.ex, buyer or self.buyer, self.listing_id, **kw)


def market(ex: Exchange, pricing: dict[str, Any] | None = None) -> Market:
    owner, partner = ex.provider("owner"), ex.provider("partner")
    providers = [
        {"key_id": owner.key_id(), "share_bps": 6_000},
        {"key_id": partner.key_id(), "share_bps": 4_000},
    ]
    pricing = pricing or {"model": "fixed", "price": 10_007}
    listing_id = publish(ex, owner, providers=providers, pricing=pricing)
    return Market(ex, owner, partner, ex.register("buyer"), listing_id)


def placed_body(
    buyer: SM2PrivateKey, q: dict[str, Any], *, renews: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "quote": q,
        "declaration": DECLARATION,
    }
    if renews is not None:
        payload["renews"] = renews
    return {"record": sign_record(buyer, "order.placed", payload).to_dict()}


def buy(
    ex: Exchange, buyer: SM2PrivateKey, listing_id: str, *, renews: str | None = None, **terms: Any
) -> str:
    """Fund the buyer with exactly the price and place the order; its id."""
    q = quote(ex, buyer, listing_id, **terms)
    assert deposit(ex, buyer, q["amount"]).status_code == 201
    response = ex.http(buyer).post("/orders", json=placed_body(buyer, q, renews=renews))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order"]["id"]
    return order_id


def act(
    ex: Exchange,
    key: SM2PrivateKey,
    order_id: str,
    action: str,
    extra: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    signer: SM2PrivateKey | None = None,
    named: str | None = None,
) -> httpx.Response:
    record_type = {
        "accept": "order.accepted",
        "dispute": "order.disputed",
        "resolve": "dispute.resolved",
        "revoke": "access.revoked",
    }[action]
    payload = {"order_id": named or order_id, **(extra or {})}
    body = ex.signed_body(signer or key, record_type, payload)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return ex.http(key).post(f"/orders/{order_id}/{action}", json=body, headers=headers)


def accept(ex: Exchange, buyer: SM2PrivateKey, order_id: str, **kw: Any) -> httpx.Response:
    return act(ex, buyer, order_id, "accept", **kw)


def dispute(ex: Exchange, buyer: SM2PrivateKey, order_id: str, **kw: Any) -> httpx.Response:
    return act(ex, buyer, order_id, "dispute", {"reason": "rows missing for May"}, **kw)


def resolve(ex: Exchange, order_id: str, outcome: str, **kw: Any) -> httpx.Response:
    extra = {"outcome": outcome, "note": "checked the delivery"}
    return act(ex, ex.operator, order_id, "resolve", extra, **kw)


def revoke(ex: Exchange, provider: SM2PrivateKey, order_id: str, **kw: Any) -> httpx.Response:
    return act(ex, provider, order_id, "revoke", {"reason": "licence breach"}, **kw)


def order(ex: Exchange, who: SM2PrivateKey, order_id: str) -> dict[str, Any]:
    response = ex.http(who).get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def platform_balance(ex: Exchange) -> tuple[int, int]:
    with ex.app.state.session_factory() as session:
        row = session.get(Account, PLATFORM_ACCOUNT)
        balance = (0, 0) if row is None else (row.available, row.held)
        assert derived_balance(session, PLATFORM_ACCOUNT) == balance
    return balance


def assert_order_balances(ex: Exchange, order_id: str) -> dict[str, int]:
    """The order's movements balance (docs/money.md); their sums by kind."""
    with ex.app.state.session_factory() as session:
        row = session.get(Order, order_id)
        assert row is not None
        moved = session.execute(
            select(col(AccountMovement.kind), col(AccountMovement.amount)).where(
                col(AccountMovement.order_id) == order_id
            )
        ).all()
    sums: dict[str, int] = {}
    for kind, amount in moved:
        sums[kind] = sums.get(kind, 0) + amount
    get = sums.get
    assert get("escrow_hold", 0) == row.amount
    assert get("escrow_hold", 0) == get("escrow_release", 0) + get("refund", 0) + row.escrow
    assert get("escrow_release", 0) == get("payout", 0) + get("fee", 0)
    assert get("settled_refund", 0) == get("clawback", 0)
    paid_out = get("payout", 0) + get("fee", 0) + get("refund", 0) + get("settled_refund", 0)
    assert row.amount == paid_out - get("clawback", 0) + row.escrow
    return sums


def assert_records(ex: Exchange, order_id: str, expected: list[tuple[str, str]]) -> list[Any]:
    """The order's log records are exactly ``expected`` (type, actor key id), each
    signature verifying under the actor's key."""
    found = order_records(ex.app, order_id)
    assert [(r.type, r.actor) for r in found] == expected
    keys = {ex.app.state.log_key.key_id(): ex.app.state.log_key.public_key()}
    keys[ex.operator.key_id()] = ex.operator.public_key()
    for record in found:
        if record.actor in keys:
            record.signed.verify(keys[record.actor])
    return found


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- accept


def test_accept_settles_with_the_exact_split(ex: Exchange) -> None:
    m = market(ex)
    order_id = m.buy()
    mark_delivered(ex.app, order_id)
    before = ex.log_size()

    response = accept(ex, m.buyer, order_id, idempotency_key="accept-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order"]["state"] == "settled" and body["order"]["escrow"] == 0
    # fee = floor(10007 × 250 / 10000) = 250; P = 9757: 5854.2 and 3902.8 → 5854 / 3902
    # and the fen left over goes to the largest remainder (0.8, the 4,000 bp share).
    owner, partner = m.owner.key_id(), m.partner.key_id()
    settlement = body["settlement"]
    assert settlement["amount"] == 10_007 and settlement["platform_fee"] == 250
    assert settlement["payouts"] == {owner: 5_854, partner: 3_903}
    assert settlement["remainder_rule"] == "largest_remainder"
    assert body["order"]["settlement"] == {
        "amount": 10_007,
        "platform_fee": 250,
        "payouts": {owner: 5_854, partner: 3_903},
    }
    assert ex.log_size() == before + 2
    assert settlement["log"]["index"] == body["log"]["index"] + 1
    ex.assert_logged(response, m.buyer, "order.accepted")

    log_key = ex.app.state.log_key
    records = assert_records(
        ex,
        order_id,
        [
            ("order.placed", m.buyer.key_id()),
            ("order.accepted", m.buyer.key_id()),
            ("settlement.paid", log_key.key_id()),
        ],
    )
    assert records[-1].payload == {
        "order_id": order_id,
        "amount": 10_007,
        "platform_fee": 250,
        "payouts": {owner: 5_854, partner: 3_903},
        "remainder_rule": "largest_remainder",
    }
    assert ex.entry(settlement["log"]["index"])["leaf_hash"] == settlement["log"]["leaf_hash"]

    assert balances(ex, m.buyer) == (0, 0)
    assert balances(ex, m.owner) == (5_854, 0)
    assert balances(ex, m.partner) == (3_903, 0)
    assert platform_balance(ex) == (250, 0)
    assert assert_order_balances(ex, order_id) == {
        "escrow_hold": 10_007,
        "escrow_release": 10_007,
        "payout": 9_757,
        "fee": 250,
    }
    kinds = [mv["kind"] for mv in ex.http(m.partner).get("/accounts/me").json()["movements"]]
    assert kinds == ["payout"]
    # operators read the platform's fee account; nobody else does
    platform = ex.http(ex.operator).get("/accounts/platform").json()
    assert (platform["account"]["available"], platform["account"]["held"]) == (250, 0)
    assert [(mv["kind"], mv["amount"], mv["order_id"]) for mv in platform["movements"]] == [
        ("fee", 250, order_id)
    ]
    error(ex.http(m.partner).get("/accounts/platform"), 403, "role_forbidden")

    # everyone who may see the order sees the breakdown, also in the lists
    for who in (m.buyer, m.owner, ex.operator):
        assert order(ex, who, order_id)["settlement"] == body["order"]["settlement"]
    listed = ex.http(m.partner).get("/orders", params={"role": "provider"}).json()["items"]
    assert listed[0]["settlement"]["payouts"][partner] == 3_903

    # the same request again is answered from the idempotency key; nothing moves
    replay = ex.http(m.buyer).post(
        f"/orders/{order_id}/accept",
        content=response.request.content,
        headers={"Idempotency-Key": "accept-1", "Content-Type": "application/json"},
    )
    assert replay.status_code == 200 and replay.json() == body
    assert replay.headers["Idempotent-Replayed"] == "true"
    # a new record (a new signature) is another request
    again = accept(ex, m.buyer, order_id, idempotency_key="accept-1")
    error(again, 422, "idempotency_key_reused")
    error(accept(ex, m.buyer, order_id), 409, "order_not_open")
    error(dispute(ex, m.buyer, order_id), 409, "order_not_open")
    assert ex.log_size() == before + 2
    assert balances(ex, m.owner) == (5_854, 0) and platform_balance(ex) == (250, 0)
    assert_books_balance(ex.app.state.engine)


def test_accept_and_dispute_refusals_write_nothing(ex: Exchange) -> None:
    m = market(ex)
    order_id = m.buy()
    stranger = ex.register("buyer")
    before = ex.log_size()

    error(accept(ex, m.buyer, order_id), 409, "not_delivered")
    error(dispute(ex, m.buyer, order_id), 409, "not_delivered")
    mark_delivered(ex.app, order_id, deadline_in_ms=-1)
    error(accept(ex, m.buyer, order_id), 409, "acceptance_closed")
    error(dispute(ex, m.buyer, order_id), 409, "acceptance_closed")
    mark_delivered(ex.app, order_id)
    error(accept(ex, stranger, order_id), 404, "order_not_found")
    error(accept(ex, m.buyer, str(uuid.uuid4())), 404, "order_not_found")
    error(accept(ex, m.owner, order_id), 403, "role_forbidden")
    error(accept(ex, m.buyer, order_id, signer=stranger), 403, "actor_mismatch")
    error(accept(ex, m.buyer, order_id, named=str(uuid.uuid4())), 422, "target_mismatch")
    error(act(ex, m.buyer, order_id, "dispute", {"reason": ""}), 422, "invalid_payload")
    error(act(ex, m.buyer, order_id, "accept", {"extra": 1}), 422, "invalid_payload")
    error(
        accept(ex, m.buyer, order_id, idempotency_key="no spaces"), 422, "invalid_idempotency_key"
    )
    body = ex.signed_body(m.buyer, "order.disputed", {"order_id": order_id, "reason": "x"})
    error(ex.http(m.buyer).post(f"/orders/{order_id}/accept", json=body), 422, "wrong_record_type")
    error(ex.http().post(f"/orders/{order_id}/accept", json=body), 401, "unauthenticated")

    assert ex.log_size() == before
    assert order(ex, m.buyer, order_id)["state"] == "delivered"
    assert balances(ex, m.buyer) == (0, 10_007) and balances(ex, m.owner) == (0, 0)
    assert_books_balance(ex.app.state.engine)


# --------------------------------------------------------------------------- disputes


def test_dispute_then_refund_or_release(ex: Exchange) -> None:
    m = market(ex)
    refunded, released = m.buy(), m.buy()
    for order_id in (refunded, released):
        mark_delivered(ex.app, order_id)
    assert balances(ex, m.buyer) == (0, 20_014)

    response = dispute(ex, m.buyer, refunded)
    assert response.status_code == 200, response.text
    assert response.json()["order"]["state"] == "disputed"
    ex.assert_logged(response, m.buyer, "order.disputed")
    assert balances(ex, m.buyer) == (0, 20_014)  # the escrow stays frozen
    error(accept(ex, m.buyer, refunded), 409, "order_not_open")
    error(dispute(ex, m.buyer, refunded), 409, "order_not_open")

    # only operators resolve, and only disputes
    before = ex.log_size()
    error(
        act(ex, m.buyer, refunded, "resolve", {"outcome": "refund", "note": "n"}),
        403,
        "role_forbidden",
    )
    error(
        act(ex, m.owner, refunded, "resolve", {"outcome": "release", "note": "n"}),
        403,
        "role_forbidden",
    )
    error(
        act(ex, ex.operator, refunded, "resolve", {"outcome": "keep", "note": "n"}),
        422,
        "invalid_payload",
    )
    error(resolve(ex, released, "refund"), 409, "not_disputed")
    assert ex.log_size() == before

    response = resolve(ex, refunded, "refund", idempotency_key="resolve-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order"]["state"] == "refunded" and body["order"]["escrow"] == 0
    assert body["refund"] == {"amount": 10_007, "from_escrow": 10_007, "clawbacks": {}}
    assert body["settlement"] is None and body["order"]["settlement"] is None
    ex.assert_logged(response, ex.operator, "dispute.resolved")
    assert balances(ex, m.buyer) == (10_007, 10_007)
    error(resolve(ex, refunded, "release"), 409, "not_disputed")
    assert_records(
        ex,
        refunded,
        [
            ("order.placed", m.buyer.key_id()),
            ("order.disputed", m.buyer.key_id()),
            ("dispute.resolved", ex.operator.key_id()),
        ],
    )
    assert assert_order_balances(ex, refunded) == {"escrow_hold": 10_007, "refund": 10_007}

    assert dispute(ex, m.buyer, released).status_code == 200
    response = resolve(ex, released, "release")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order"]["state"] == "settled"
    assert body["settlement"]["payouts"] == {m.owner.key_id(): 5_854, m.partner.key_id(): 3_903}
    assert body["settlement"]["log"]["index"] == body["log"]["index"] + 1
    log_key = ex.app.state.log_key.key_id()
    assert_records(
        ex,
        released,
        [
            ("order.placed", m.buyer.key_id()),
            ("order.disputed", m.buyer.key_id()),
            ("dispute.resolved", ex.operator.key_id()),
            ("settlement.paid", log_key),
        ],
    )
    assert balances(ex, m.buyer) == (10_007, 0)
    assert balances(ex, m.owner) == (5_854, 0) and platform_balance(ex) == (250, 0)
    assert_order_balances(ex, released)
    assert_books_balance(ex.app.state.engine)


# --------------------------------------------------------------------------- auto-accept


def test_auto_accept_settles_only_due_delivered_orders(ex: Exchange) -> None:
    m = market(ex)
    due, later, placed, disputed = m.buy(), m.buy(), m.buy(), m.buy()
    deadline = mark_delivered(ex.app, due, deadline_in_ms=-1_000)
    mark_delivered(ex.app, later, deadline_in_ms=HOUR_MS)
    mark_delivered(ex.app, disputed)
    assert dispute(ex, m.buyer, disputed).status_code == 200
    set_order(ex.app, disputed, acceptance_deadline=deadline)
    assert ex.app.state.auto_acceptor is not None  # the background service runs

    log_key = ex.app.state.log_key
    settings = ex.app.state.settings
    now = now_ms()
    with ex.app.state.session_factory() as session:
        assert auto_accept_due(session, log_key, settings, now) == 1
    states = {oid: order(ex, m.buyer, oid)["state"] for oid in (due, later, placed, disputed)}
    assert states == {due: "settled", later: "delivered", placed: "placed", disputed: "disputed"}
    records = assert_records(
        ex,
        due,
        [
            ("order.placed", m.buyer.key_id()),
            ("order.auto_accepted", log_key.key_id()),
            ("settlement.paid", log_key.key_id()),
        ],
    )
    assert records[1].payload == {"order_id": due, "acceptance_deadline": deadline}
    assert records[2].index == records[1].index + 1
    assert order(ex, m.owner, due)["settlement"]["payouts"][m.owner.key_id()] == 5_854

    # idempotent: nothing more is due
    size = ex.log_size()
    with ex.app.state.session_factory() as session:
        assert auto_accept_due(session, log_key, settings, now) == 0
    assert ex.log_size() == size
    error(accept(ex, m.buyer, due), 409, "order_not_open")

    # later, the second one is due too; the service's pass does the same work
    acceptor = AutoAcceptor(
        ex.app.state.session_factory,
        log_key,
        settings,
        interval=3600,
        clock=lambda: now + 2 * HOUR_MS,
    )
    assert acceptor.run_once() == 1
    assert acceptor.run_once() == 0
    assert order(ex, m.buyer, later)["state"] == "settled"
    assert balances(ex, m.owner) == (2 * 5_854, 0) and balances(ex, m.partner) == (2 * 3_903, 0)
    assert platform_balance(ex) == (500, 0)
    assert balances(ex, m.buyer) == (0, 2 * 10_007)  # placed and disputed stay in escrow
    for oid in (due, later, placed, disputed):
        assert_order_balances(ex, oid)


# --------------------------------------------------------------------------- revocation


def _mid_period(ex: Exchange, order_id: str) -> tuple[int, int]:
    """Move the order's 30-day paid period so that a third of it is used; (start, end)."""
    start = now_ms() - 10 * DAY_MS
    end = start + 30 * DAY_MS
    set_order(ex.app, order_id, created_at=start, access_expires_at=end)
    return start, end
    assert_books_balance(ex.app.state.engine)


def test_revoke_subscription_refunds_the_unused_part(ex: Exchange) -> None:
    m = market(ex, SUBSCRIPTION)
    held, settled = m.buy(periods=1), m.buy(periods=1)
    owner, partner = m.owner.key_id(), m.partner.key_id()

    # still in escrow: the unused part goes back from the escrow, the rest settles later
    mark_delivered(ex.app, held)
    start, end = _mid_period(ex, held)
    response = revoke(ex, m.partner, held, idempotency_key="revoke-1")
    assert response.status_code == 200, response.text
    body = response.json()
    revoked_at = body["order"]["revoked_at"]
    assert start < revoked_at < end
    refund = ceil_div(3_001 * (end - revoked_at), end - start)  # rounded up: buyer's favour
    assert 2_000 < refund <= 2_001
    assert body["refund"] == {"amount": refund, "from_escrow": refund, "clawbacks": {}}
    assert body["order"]["revocation_reason"] == "licence breach"
    assert body["order"]["state"] == "delivered" and body["order"]["escrow"] == 3_001 - refund
    ex.assert_logged(response, m.partner, "access.revoked")
    assert balances(ex, m.buyer) == (refund, 2 * 3_001 - refund)
    error(revoke(ex, m.owner, held), 409, "already_revoked")
    rest = 3_001 - refund
    response = accept(ex, m.buyer, held)
    assert response.status_code == 200, response.text
    fee = rest * FEE_BP // 10_000
    assert response.json()["settlement"]["amount"] == rest
    assert response.json()["settlement"]["platform_fee"] == fee
    assert_order_balances(ex, held)

    # already settled: the refund is clawed back from the payees, pro rata to their parts
    mark_delivered(ex.app, settled)
    assert accept(ex, m.buyer, settled).status_code == 200
    paid = order(ex, m.buyer, settled)["settlement"]
    # 3001: fee 75, P 2926 → 1755.6 / 1170.4 → 1756 / 1170
    assert paid == {"amount": 3_001, "platform_fee": 75, "payouts": {owner: 1_756, partner: 1_170}}
    start, end = _mid_period(ex, settled)
    before = {k: balances(ex, k) for k in (m.owner, m.partner, m.buyer)}
    platform_before = platform_balance(ex)
    response = revoke(ex, m.owner, settled)
    assert response.status_code == 200, response.text
    body = response.json()
    refund = ceil_div(3_001 * (end - body["order"]["revoked_at"]), end - start)
    clawbacks = apportion(refund, {owner: 1_756, partner: 1_170, PLATFORM_ACCOUNT: 75})
    assert sum(clawbacks.values()) == refund
    assert body["refund"] == {"amount": refund, "from_escrow": 0, "clawbacks": clawbacks}
    assert body["order"]["state"] == "settled" and body["order"]["settlement"] == paid
    assert balances(ex, m.owner)[0] == before[m.owner][0] - clawbacks[owner]
    assert balances(ex, m.partner)[0] == before[m.partner][0] - clawbacks[partner]
    assert platform_balance(ex)[0] == platform_before[0] - clawbacks[PLATFORM_ACCOUNT]
    assert balances(ex, m.buyer)[0] == before[m.buyer][0] + refund
    sums = assert_order_balances(ex, settled)
    assert sums["clawback"] == sums["settled_refund"] == refund
    assert_records(
        ex,
        settled,
        [
            ("order.placed", m.buyer.key_id()),
            ("order.accepted", m.buyer.key_id()),
            ("settlement.paid", ex.app.state.log_key.key_id()),
            ("access.revoked", owner),
        ],
    )
    assert_books_balance(ex.app.state.engine)


def test_revoke_one_off_and_refusals(ex: Exchange) -> None:
    m = market(ex)
    settled, delivered, disputed, placed = m.buy(), m.buy(), m.buy(), m.buy()
    for order_id in (settled, delivered, disputed):
        mark_delivered(ex.app, order_id)
    assert accept(ex, m.buyer, settled).status_code == 200
    assert dispute(ex, m.buyer, disputed).status_code == 200
    assert resolve(ex, disputed, "refund").status_code == 200
    outsider = ex.provider("outsider")
    before = ex.log_size()
    error(revoke(ex, outsider, settled), 403, "not_provider")
    error(act(ex, m.buyer, settled, "revoke", {"reason": "x"}), 403, "role_forbidden")
    error(act(ex, ex.operator, settled, "revoke", {"reason": "x"}), 403, "role_forbidden")
    error(revoke(ex, m.owner, str(uuid.uuid4())), 404, "order_not_found")
    error(act(ex, m.owner, settled, "revoke", {"reason": "r" * 501}), 422, "invalid_payload")
    error(revoke(ex, m.owner, disputed), 409, "order_closed")
    assert ex.log_size() == before

    # settled one-off: the data was delivered and accepted, nothing comes back
    owner_before = balances(ex, m.owner)
    response = revoke(ex, m.owner, settled)
    assert response.status_code == 200, response.text
    assert response.json()["refund"] == {"amount": 0, "from_escrow": 0, "clawbacks": {}}
    assert response.json()["order"]["state"] == "settled"
    assert balances(ex, m.owner) == owner_before
    error(revoke(ex, m.owner, settled), 409, "already_revoked")
    error(revoke(ex, m.partner, settled), 409, "already_revoked")

    # not settled yet (delivered, or never delivered): the whole escrow comes back
    buyer_before = balances(ex, m.buyer)
    for order_id in (delivered, placed):
        response = revoke(ex, m.partner, order_id)
        assert response.status_code == 200, response.text
        assert response.json()["refund"]["from_escrow"] == 10_007
        assert response.json()["order"]["state"] == "refunded"
        assert_order_balances(ex, order_id)
    assert balances(ex, m.buyer) == (buyer_before[0] + 20_014, buyer_before[1] - 20_014)
    error(accept(ex, m.buyer, delivered), 409, "order_not_open")
    shown = order(ex, m.owner, delivered)
    assert shown["revoked_at"] is not None and shown["revocation_reason"] == "licence breach"
    assert_books_balance(ex.app.state.engine)


def test_clawback_a_payee_cannot_cover_changes_nothing(ex: Exchange) -> None:
    m = market(ex, SUBSCRIPTION)
    order_id = m.buy(periods=1)
    mark_delivered(ex.app, order_id)
    assert accept(ex, m.buyer, order_id, idempotency_key="acc").status_code == 200
    _mid_period(ex, order_id)
    # the partner has spent its payout meanwhile (withdrawals are outside the exchange)
    with ex.app.state.session_factory() as session:
        session.execute(
            update(Account).where(col(Account.key_id) == m.partner.key_id()).values(available=0)
        )
        session.commit()
    size = ex.log_size()
    owner, buyer = balances(ex, m.owner), balances(ex, m.buyer)

    message = error(revoke(ex, m.owner, order_id, idempotency_key="rv"), 409, "insufficient_funds")
    assert m.partner.key_id() in message
    assert ex.log_size() == size
    assert balances(ex, m.owner) == owner and balances(ex, m.buyer) == buyer
    assert platform_balance(ex) == (75, 0)
    shown = order(ex, m.buyer, order_id)
    assert shown["revoked_at"] is None and shown["state"] == "settled"
    assert_order_balances(ex, order_id)
    assert "clawback" not in assert_order_balances(ex, order_id)
    # the partner's balance was changed by hand above: the books name exactly that, and
    # the accounts no longer add up to the deposits (the reconciliation)
    tampered, total = check_books(ex.app.state.engine)
    assert (tampered.kind, tampered.account) == ("available", m.partner.key_id())
    assert tampered.actual == 0 and tampered.expected > 0
    assert total.kind == "reconciliation"
    assert total.expected - total.actual == tampered.expected


# --------------------------------------------------------------------------- renewal


def test_renewal_extends_the_paid_period(ex: Exchange) -> None:
    m = market(ex, SUBSCRIPTION)
    first = m.buy(periods=1)
    expires = order(ex, m.buyer, first)["access_expires_at"]

    renewal = m.buy(periods=2, renews=first)
    shown = order(ex, m.buyer, renewal)
    assert shown["renews_order_id"] == first
    assert shown["access_expires_at"] == expires + 2 * 30 * DAY_MS
    assert order(ex, m.owner, renewal)["renews_order_id"] == first
    assert_records(ex, renewal, [("order.placed", m.buyer.key_id())])
    placed = order_records(ex.app, renewal)[0]
    assert placed.payload["renews"] == first

    # the renewal is itself renewable; the renewed order no more (it is renewed)
    third = m.buy(periods=1, renews=renewal)
    assert order(ex, m.buyer, third)["access_expires_at"] == expires + 3 * 30 * DAY_MS

    # a lapsed subscription renews from now
    lapsed = m.buy(periods=1)
    set_order(ex.app, lapsed, access_expires_at=now_ms() - DAY_MS)
    fresh = m.buy(periods=1, renews=lapsed)
    shown = order(ex, m.buyer, fresh)
    assert shown["access_expires_at"] == shown["created_at"] + 30 * DAY_MS
    assert_books_balance(ex.app.state.engine)


def test_not_renewable(ex: Exchange) -> None:
    m = market(ex, SUBSCRIPTION)
    other = market(ex, SUBSCRIPTION)
    one_off = market(ex)
    first = m.buy(periods=1)
    renewed = m.buy(periods=1, renews=first)
    revoked, refunded = m.buy(periods=1), m.buy(periods=1)
    assert revoke(ex, m.owner, revoked).status_code == 200
    mark_delivered(ex.app, refunded)
    assert dispute(ex, m.buyer, refunded).status_code == 200
    assert resolve(ex, refunded, "refund").status_code == 200
    stranger = ex.register("buyer")
    strangers_order = buy(ex, stranger, m.listing_id, periods=1)
    fixed_order = one_off.buy()

    cases = [
        (m.listing_id, first, "already renewed"),  # renew the renewal instead
        (m.listing_id, revoked, "revoked"),
        (m.listing_id, refunded, "refunded"),
        (m.listing_id, strangers_order, "no order"),
        (m.listing_id, str(uuid.uuid4()), "no order"),
        (other.listing_id, renewed, "another listing"),
        (one_off.listing_id, fixed_order, "not sold by subscription"),
    ]
    for listing_id, previous, why in cases:
        q = quote(
            ex, m.buyer, listing_id, **({} if listing_id == one_off.listing_id else {"periods": 1})
        )
        assert deposit(ex, m.buyer, q["amount"]).status_code == 201
        size, account = ex.log_size(), balances(ex, m.buyer)
        response = ex.http(m.buyer).post("/orders", json=placed_body(m.buyer, q, renews=previous))
        assert why in error(response, 409, "not_renewable"), why
        assert ex.log_size() == size and balances(ex, m.buyer) == account
    # a malformed order id is a malformed payload
    response = ex.http(m.buyer).post(
        "/orders",
        json=placed_body(m.buyer, quote(ex, m.buyer, one_off.listing_id), renews="not-a-uuid"),
    )
    error(response, 422, "invalid_payload")


# --------------------------------------------------------------------------- races


def race(
    clients: list[httpx.Client], paths: list[str], bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    """POST ``bodies[i]`` to ``paths[i]`` with ``clients[i]``, all at once (threads)."""
    results: list[httpx.Response | None] = [None] * len(paths)
    barrier = threading.Barrier(len(paths))

    def post(i: int) -> None:
        barrier.wait()
        results[i] = clients[i].post(paths[i], json=bodies[i], timeout=60)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    assert len(done) == len(paths)
    return done
    assert_books_balance(ex.app.state.engine)


def test_accept_and_dispute_race_has_one_winner(ex: Exchange) -> None:
    m = market(ex)
    orders = [m.buy() for _ in range(4)]
    for order_id in orders:
        mark_delivered(ex.app, order_id)
    buyer_http = [ex.http(m.buyer), ex.http(m.buyer)]
    winners = []
    for order_id in orders:
        bodies = [
            ex.signed_body(m.buyer, "order.accepted", {"order_id": order_id}),
            ex.signed_body(m.buyer, "order.disputed", {"order_id": order_id, "reason": "late"}),
        ]
        paths = [f"/orders/{order_id}/accept", f"/orders/{order_id}/dispute"]
        results = race(buyer_http, paths, bodies)
        statuses = [r.status_code for r in results]
        assert sorted(statuses) == [200, 409], statuses
        loser = results[statuses.index(409)]
        assert loser.json()["code"] in ("concurrent_update", "order_not_open")
        won = "accept" if statuses[0] == 200 else "dispute"
        winners.append(won)
        state = order(ex, m.buyer, order_id)["state"]
        assert state == ("settled" if won == "accept" else "disputed")
        types = [r.type for r in order_records(ex.app, order_id)]
        decisions = [t for t in types if t in ("order.accepted", "order.disputed")]
        assert decisions == ["order.accepted" if won == "accept" else "order.disputed"]
        assert ("settlement.paid" in types) == (won == "accept")
        assert_order_balances(ex, order_id)
    accepted = winners.count("accept")
    assert balances(ex, m.owner) == (accepted * 5_854, 0)
    assert balances(ex, m.buyer) == (0, (len(orders) - accepted) * 10_007)
    assert platform_balance(ex) == (accepted * 250, 0)
    assert_books_balance(ex.app.state.engine)
