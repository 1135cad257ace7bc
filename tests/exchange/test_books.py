"""The books check (exchange.books) over a real exchange: a story with every kind of
movement balances; a tampered balance, a movement without a record, a record
without its movement and a changed escrow are each reported (SQLite; also
PostgreSQL when ``TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from json import loads as json_loads
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlmodel import Session, col
from test_auth_support import Exchange, running_exchange
from test_lifecycle_support import DAY_MS, mark_delivered, now_ms, set_order
from test_order_lifecycle import SUBSCRIPTION, accept, dispute, market, resolve, revoke
from test_orders import BACKENDS, balances
from test_withdrawals import decide, requested

from exchange.accounts.models import Account, AccountMovement, MovementKind
from exchange.accounts.service import movement
from exchange.books import (
    BooksDoNotBalanceError,
    Discrepancy,
    DiscrepancyKind,
    assert_books_balance,
    check_books,
)
from exchange.orders.models import Order
from ledger.protocol.accounts import PLATFORM_ACCOUNT


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, platform_fee_bp=250, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def _story(ex: Exchange) -> dict[str, Any]:
    """Deposits, orders settled, refunded by a dispute, revoked before and after
    settlement (a refund from escrow, clawbacks), a renewal, and withdrawals paid,
    rejected and pending."""
    m = market(ex, SUBSCRIPTION)
    settled, disputed, held = m.buy(periods=1), m.buy(periods=1), m.buy(periods=2)
    for order_id in (settled, disputed, held):
        mark_delivered(ex.app, order_id)
    assert accept(ex, m.buyer, settled).status_code == 200
    assert dispute(ex, m.buyer, disputed).status_code == 200
    assert resolve(ex, disputed, "refund").status_code == 200
    renewal = m.buy(periods=1, renews=settled)
    start = now_ms() - 10 * DAY_MS
    for order_id, days in ((settled, 30), (held, 60)):
        set_order(ex.app, order_id, created_at=start, access_expires_at=start + days * DAY_MS)
    assert revoke(ex, m.owner, settled).status_code == 200  # clawed back from the payees
    assert revoke(ex, m.partner, held).status_code == 200  # refunded from the escrow
    assert accept(ex, m.buyer, held).status_code == 200  # the rest settles
    owner, partner = balances(ex, m.owner)[0], balances(ex, m.partner)[0]
    assert owner >= 2 and partner >= 1
    paid, rejected = requested(ex, m.owner, owner // 2), requested(ex, m.partner, partner)
    assert decide(ex, paid, "paid").status_code == 200
    assert decide(ex, rejected, "rejected").status_code == 200
    requested(ex, m.owner, 1)  # pending: held
    return {"market": m, "settled": settled, "renewal": renewal}


def reconciled(found: list[Discrepancy], surplus: int) -> Discrepancy:
    """The reconciliation's discrepancy among ``found``: the accounts hold ``surplus``
    fen more than deposits brought in."""
    [total] = [d for d in found if d.kind is DiscrepancyKind.RECONCILIATION]
    assert total.actual - total.expected == surplus
    assert total.account == "all"
    assert " ≠ Σ available " in total.detail
    return total


def _session(ex: Exchange) -> Session:
    session: Session = ex.app.state.session_factory()
    return session


def test_a_story_balances(ex: Exchange) -> None:
    _story(ex)
    assert check_books(ex.app.state.engine) == []
    assert_books_balance(ex.app.state.engine)


def test_a_tampered_balance_is_reported(ex: Exchange) -> None:
    m = _story(ex)["market"]
    owner = m.owner.key_id()
    with _session(ex) as session:
        stored = session.get(Account, owner)
        assert stored is not None
        available = stored.available
        session.execute(
            update(Account).where(col(Account.key_id) == owner).values(available=available + 1)
        )
        session.execute(
            update(Account).where(col(Account.key_id) == PLATFORM_ACCOUNT).values(held=5)
        )
        session.commit()
    found = check_books(ex.app.state.engine)
    # 6 fen more in the accounts than deposits brought in: the reconciliation fails too
    total = reconciled(found, 6)
    assert sorted(found, key=str) == sorted(
        [
            Discrepancy(DiscrepancyKind.AVAILABLE, owner, available, available + 1),
            Discrepancy(DiscrepancyKind.HELD, PLATFORM_ACCOUNT, 0, 5),
            total,
        ],
        key=str,
    )
    with pytest.raises(BooksDoNotBalanceError) as caught:
        assert_books_balance(ex.app.state.engine)
    assert caught.value.discrepancies == found
    assert f"available of {owner}: expected {available}, stored {available + 1}" in str(
        caught.value
    )


def test_a_movement_without_a_record_is_reported(ex: Exchange) -> None:
    m = _story(ex)["market"]
    buyer = m.buyer.key_id()
    forged = uuid.uuid4().bytes + uuid.uuid4().bytes
    with _session(ex) as session:
        stored = session.get(Account, buyer)
        assert stored is not None
        available = stored.available
        # a credit made "by hand": balance and movement agree, but no record explains them
        session.add(movement(buyer, MovementKind.DEPOSIT, 777, leaf_hash=forged))
        session.execute(
            update(Account).where(col(Account.key_id) == buyer).values(available=available + 777)
        )
        session.commit()
    found = check_books(ex.app.state.engine)
    total = reconciled(found, 777)
    assert sorted(found, key=str) == sorted(
        [
            total,
            Discrepancy(
                DiscrepancyKind.UNLOGGED_MOVEMENT,
                buyer,
                0,
                777,
                f"deposit naming leaf {forged.hex()}, which is not in the log",
            ),
            Discrepancy(DiscrepancyKind.AVAILABLE, buyer, available, available + 777),
        ],
        key=str,
    )


def test_a_record_without_its_movement_and_a_changed_escrow_are_reported(ex: Exchange) -> None:
    story = _story(ex)
    m, renewal = story["market"], story["renewal"]
    with _session(ex) as session:
        hold = session.execute(
            delete(AccountMovement)
            .where(
                col(AccountMovement.order_id) == renewal,
                col(AccountMovement.kind) == MovementKind.ESCROW_HOLD.value,
            )
            .returning(col(AccountMovement.amount), col(AccountMovement.leaf_hash))
        ).one()
        session.execute(update(Order).where(col(Order.id) == renewal).values(escrow=1))
        session.commit()
    amount, leaf = hold
    found = check_books(ex.app.state.engine)
    assert sorted(found, key=str) == sorted(
        [
            Discrepancy(
                DiscrepancyKind.MOVEMENT,
                m.buyer.key_id(),
                amount,
                0,
                f"escrow_hold of the record with leaf hash {leaf}",
            ),
            Discrepancy(DiscrepancyKind.ESCROW, renewal, amount, 1),
        ],
        key=str,
    )


def test_db_check_command_reports_and_exits_1(ex: Exchange) -> None:
    """``shancheng db check`` on the exchange's database: balanced → exit 0; one
    tampered balance → exit 1 naming it, in the JSON document too."""
    from typer.testing import CliRunner

    from exchange.cli import app as shancheng

    url = ex.app.state.settings.resolved_database_url
    m = _story(ex)["market"]
    runner = CliRunner()
    balanced = runner.invoke(shancheng, ["db", "check", "--database-url", url])
    assert balanced.exit_code == 0, balanced.output
    assert "the books balance with the log" in balanced.stdout
    buyer = m.buyer.key_id()
    with _session(ex) as session:
        session.execute(
            update(Account)
            .where(col(Account.key_id) == buyer)
            .values(available=Account.available + 100)
        )
        session.commit()
    tampered = runner.invoke(shancheng, ["db", "check", "--database-url", url, "--json"])
    assert tampered.exit_code == 1
    document = json_loads(tampered.stdout)
    assert document["balanced"] is False
    assert document["reconciliation"]["ok"] is False
    found, total = document["discrepancies"]
    assert total["kind"] == "reconciliation" and total["actual"] - total["expected"] == 100
    assert found["kind"] == "available" and found["account"] == buyer
    assert found["actual"] - found["expected"] == 100
