"""Revoking a subscription renewal (SQLite; also PostgreSQL when ``TEST_POSTGRES_URL``
is set): its paid period starts where the renewed order's ends
(:func:`exchange.orders.settle.paid_period`), so the refund is pro rata over THAT
period — whole when revoked before it starts — from the escrow or clawed back from
each payee in proportion to what it was paid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, running_exchange
from test_lifecycle_support import DAY_MS, mark_delivered, now_ms, set_order
from test_order_lifecycle import (
    FEE_BP,
    SUBSCRIPTION,
    accept,
    assert_order_balances,
    ceil_div,
    market,
    order,
    platform_balance,
    revoke,
)
from test_orders import BACKENDS, balances

from exchange.settlement import apportion
from ledger.protocol.accounts import PLATFORM_ACCOUNT


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, platform_fee_bp=FEE_BP, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def test_revoking_a_settled_renewal_before_its_period_starts_refunds_it_whole(
    ex: Exchange,
) -> None:
    """A renewal's paid period starts where the renewed order's ends: revoked while
    the first period still runs, none of it was used, so all of it comes back,
    clawed back from each payee exactly what it was paid."""
    m = market(ex, SUBSCRIPTION)
    owner, partner = m.owner.key_id(), m.partner.key_id()
    first = m.buy(periods=1)
    renewal = m.buy(periods=2, renews=first)
    for order_id in (first, renewal):
        mark_delivered(ex.app, order_id)
        assert accept(ex, m.buyer, order_id).status_code == 200
    # 6002: fee floor(150.05) = 150, P 5852 → 3511.2 / 2340.8 → 3511 / 2341
    paid = {"amount": 6_002, "platform_fee": 150, "payouts": {owner: 3_511, partner: 2_341}}
    assert order(ex, m.buyer, renewal)["settlement"] == paid
    # the first period runs 25 days ago → 5 days on; the renewal was placed 20 days ago
    first_end = now_ms() + 5 * DAY_MS
    set_order(ex.app, first, created_at=first_end - 30 * DAY_MS, access_expires_at=first_end)
    set_order(
        ex.app,
        renewal,
        created_at=first_end - 25 * DAY_MS,
        access_expires_at=first_end + 60 * DAY_MS,
    )
    before = {key: balances(ex, key) for key in (m.owner, m.partner, m.buyer)}
    platform_before = platform_balance(ex)

    response = revoke(ex, m.owner, renewal)
    assert response.status_code == 200, response.text
    body = response.json()
    clawbacks = {owner: 3_511, partner: 2_341, PLATFORM_ACCOUNT: 150}
    assert body["refund"] == {"amount": 6_002, "from_escrow": 0, "clawbacks": clawbacks}
    assert body["order"]["state"] == "settled" and body["order"]["settlement"] == paid
    assert balances(ex, m.owner) == (before[m.owner][0] - 3_511, 0)
    assert balances(ex, m.partner) == (before[m.partner][0] - 2_341, 0)
    assert platform_balance(ex) == (platform_before[0] - 150, 0)
    assert balances(ex, m.buyer) == (before[m.buyer][0] + 6_002, 0)
    assert assert_order_balances(ex, renewal) == {
        "escrow_hold": 6_002,
        "escrow_release": 6_002,
        "payout": 5_852,
        "fee": 150,
        "clawback": 6_002,
        "settled_refund": 6_002,
    }
    # the renewed order keeps its own period and its money
    assert order(ex, m.buyer, first)["revoked_at"] is None
    assert "clawback" not in assert_order_balances(ex, first)


def test_revoking_a_renewal_mid_period_refunds_the_unused_part_of_its_own_period(
    ex: Exchange,
) -> None:
    """The renewed period ended 15 days ago; the renewal (60 days, placed during
    the first period) has used 15 of its 60 days: three quarters come back from the
    escrow, pro rata over the renewal's period — not over the time since it was
    placed."""
    m = market(ex, SUBSCRIPTION)
    owner, partner = m.owner.key_id(), m.partner.key_id()
    first = m.buy(periods=1)
    renewal = m.buy(periods=2, renews=first)
    start = now_ms() - 15 * DAY_MS  # where the first period ended
    end = start + 60 * DAY_MS
    set_order(ex.app, first, created_at=start - 30 * DAY_MS, access_expires_at=start)
    set_order(ex.app, renewal, created_at=start - 20 * DAY_MS, access_expires_at=end)
    mark_delivered(ex.app, renewal)

    response = revoke(ex, m.partner, renewal)
    assert response.status_code == 200, response.text
    body = response.json()
    revoked_at = body["order"]["revoked_at"]
    refund = ceil_div(6_002 * (end - revoked_at), end - start)  # rounded up: buyer's favour
    assert 4_501 <= refund <= 4_502  # 45 of 60 days unused, give or take the request's ms
    assert body["refund"] == {"amount": refund, "from_escrow": refund, "clawbacks": {}}
    assert body["order"]["state"] == "delivered" and body["order"]["escrow"] == 6_002 - refund
    assert balances(ex, m.buyer) == (refund, 3_001 + 6_002 - refund)

    # the rest settles on acceptance, split as usual
    rest = 6_002 - refund
    response = accept(ex, m.buyer, renewal)
    assert response.status_code == 200, response.text
    fee = rest * FEE_BP // 10_000
    payouts = apportion(rest - fee, {owner: 6_000, partner: 4_000})
    assert response.json()["settlement"]["amount"] == rest
    assert response.json()["settlement"]["platform_fee"] == fee
    assert response.json()["settlement"]["payouts"] == payouts
    assert balances(ex, m.owner) == (payouts[owner], 0)
    assert balances(ex, m.partner) == (payouts[partner], 0)
    assert platform_balance(ex) == (fee, 0)
    assert balances(ex, m.buyer) == (refund, 3_001)  # the first order is still in escrow
    sums = assert_order_balances(ex, renewal)
    assert sums["refund"] == refund and sums["escrow_release"] == rest
