"""The SDK's payout methods against the real app: the sync client over a real uvicorn,
the async twin in-process (``httpx.ASGITransport``). Withdraw, list, read, pay and
reject; refusals arrive as ``APIError`` with the server's status and code; a retry
with the same Idempotency-Key and record withdraws once; an answer whose receipt is
not the record's is refused."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from test_sdk_market import Market, exchange_app, market, refused  # noqa: F401

from clients.sdk import (
    AsyncExchangeClient,
    ExchangeClient,
    InsufficientFundsError,
    ResponseVerificationError,
    Withdrawal,
)
from ledger.sm2 import SM2PrivateKey


def test_withdraw_pay_and_reject(market: Market) -> None:  # noqa: F811
    buyer = market.buyer(deposit=10_000)
    pending = buyer.withdraw(3_000, "中国银行 6217 0000 0000 0042")
    assert isinstance(pending, Withdrawal)
    assert (pending.state, pending.amount, pending.participant) == ("pending", 3_000, buyer.key_id)
    assert pending.account is not None and pending.log is not None
    assert (pending.account.available, pending.account.held) == (7_000, 3_000)
    assert pending.requested_leaf_hash == pending.log.leaf_hash

    paid = market.operator.pay_withdrawal(pending.id, "BOC transfer 0042")
    assert (paid.state, paid.transfer_reference) == ("paid", "BOC transfer 0042")
    assert paid.decided_by == market.operator.key_id and paid.log is not None
    assert paid.account is not None and (paid.account.available, paid.account.held) == (7_000, 0)
    refused(
        lambda: market.operator.reject_withdrawal(pending.id, "late"), 409, "withdrawal_decided"
    )

    second = buyer.withdraw(2_000, "中国银行 6217 0000 0000 0042")
    rejected = market.operator.reject_withdrawal(second.id, "the name on the account differs")
    assert rejected.state == "rejected" and rejected.reason == "the name on the account differs"
    assert buyer.account().available == 7_000

    assert [w.id for w in buyer.withdrawals().items] == [second.id, pending.id]
    assert [w.id for w in buyer.withdrawals(state="paid").items] == [pending.id]
    assert buyer.withdrawal(pending.id) == dataclasses.replace(paid, account=None, log=None)
    assert {w.id for w in market.operator.withdrawals(state="rejected").items} == {second.id}
    other = market.buyer()
    refused(lambda: other.withdrawal(pending.id), 404, "withdrawal_not_found")
    refused(lambda: buyer.pay_withdrawal(second.id, "me"), 403, "role_forbidden")
    with pytest.raises(InsufficientFundsError):
        buyer.withdraw(7_001, "bank")
    with pytest.raises(ValueError):
        buyer.withdraw(0, "bank")
    with pytest.raises(ValueError):
        buyer.withdrawals(state="sent")


def _plain(withdrawal: Withdrawal) -> dict[str, object]:
    return {
        "id": withdrawal.id,
        "participant": withdrawal.participant,
        "amount": withdrawal.amount,
        "destination": withdrawal.destination,
        "state": withdrawal.state,
        "requested_at": withdrawal.requested_at,
        "requested_leaf_hash": withdrawal.requested_leaf_hash,
        "decided_at": withdrawal.decided_at,
        "decided_by": withdrawal.decided_by,
        "decision_leaf_hash": withdrawal.decision_leaf_hash,
        "transfer_reference": withdrawal.transfer_reference,
        "reason": withdrawal.reason,
    }


def test_a_retried_withdrawal_withdraws_once(market: Market) -> None:  # noqa: F811
    buyer = market.buyer(deposit=5_000)
    call = buyer._withdraw_call(2_000, "bank", None, "retry-1")
    first = buyer._send(call)
    assert buyer._send(call) == first  # what a retry after a lost answer sends
    assert (buyer.account().available, buyer.account().held) == (3_000, 2_000)
    assert [w.id for w in buyer.withdrawals().items] == [first.id]


def test_an_answer_for_another_record_is_refused(market: Market) -> None:  # noqa: F811
    """A (malicious) exchange answering a withdrawal with another record's receipt."""
    buyer = market.buyer(deposit=5_000)
    earlier = buyer.withdraw(1_000, "bank")

    assert earlier.log is not None and buyer.key is not None

    def forge(request: httpx.Request) -> httpx.Response:
        body = {
            "withdrawal": _plain(earlier),
            "account": {"key_id": buyer.key_id, "available": 3_000, "held": 2_000},
            "log": earlier.log.to_dict() if earlier.log is not None else None,
        }
        return httpx.Response(201, json=body)

    log_key = market.app.state.log_key.public_key()
    liar = market.client(buyer.key, transport=httpx.MockTransport(forge), trusted_log_key=log_key)
    with pytest.raises(ResponseVerificationError, match=r"the withdrawal\.requested record"):
        liar.withdraw(1_000, "bank")


def test_the_async_twin(tmp_path: Path) -> None:
    async def scenario(app: FastAPI, operator_key: SM2PrivateKey) -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)

            def client(key: SM2PrivateKey | None = None) -> AsyncExchangeClient:
                key = key or SM2PrivateKey.generate()
                return AsyncExchangeClient("http://exchange.test", key=key, transport=transport)

            async with client(operator_key) as operator, client() as provider:
                await provider.register("重庆数据有限公司", "provider")
                await operator.approve_participant(provider.key_id or "")
                await operator.deposit(provider.key_id or "", 9_000, "bank transfer")
                pending = await provider.withdraw(4_000, "bank account 1")
                assert pending.state == "pending" and pending.account is not None
                assert (pending.account.available, pending.account.held) == (5_000, 4_000)
                page = await operator.withdrawals(state="pending")
                assert [w.id for w in page.items] == [pending.id]
                paid = await operator.pay_withdrawal(pending.id, "transfer 1")
                assert paid.state == "paid"
                other = await provider.withdraw(1_000, "bank account 1")
                assert (await operator.reject_withdrawal(other.id, "no")).state == "rejected"
                assert (await provider.withdrawal(other.id)).state == "rejected"
                with pytest.raises(InsufficientFundsError):
                    await provider.withdraw(5_001, "bank account 1")
                account = await provider.account()
                assert (account.available, account.held) == (5_000, 0)

    with exchange_app(tmp_path) as (app, operator_key):
        asyncio.run(scenario(app, operator_key))


def test_operators_withdraw_the_platform_fees(live_server: Any, tmp_path: Path) -> None:
    """One operator withdraws the fees (``platform=True``), another pays them out;
    the one who asked cannot (four eyes)."""
    from test_auth_support import running_exchange
    from test_lifecycle_support import mark_delivered
    from test_order_lifecycle import accept
    from test_order_lifecycle import market as order_market

    second = SM2PrivateKey.generate()
    with running_exchange(
        live_server, tmp_path, other_operators=(second,), platform_fee_bp=500
    ) as ex:
        m = order_market(ex)
        mark_delivered(ex.app, (order_id := m.buy()))
        assert accept(ex, m.buyer, order_id).status_code == 200
        with (
            ExchangeClient(ex.url, key=ex.operator) as first_operator,
            ExchangeClient(ex.url, key=second) as second_operator,
        ):
            fees = first_operator.account("platform").available
            asked = first_operator.withdraw(fees, "工商银行 对公 0001", platform=True)
            assert (asked.participant, asked.amount, asked.state) == ("platform", fees, "pending")
            assert asked.account is not None and asked.account.held == fees
            refused(lambda: first_operator.pay_withdrawal(asked.id, "self"), 403, "same_operator")
            paid = second_operator.pay_withdrawal(asked.id, "ICBC 20261207-9")
            assert (paid.state, paid.decided_by) == ("paid", second_operator.key_id)
            assert first_operator.account("platform").held == 0
            buyer = ExchangeClient(ex.url, key=m.buyer)
            with buyer:
                refused(lambda: buyer.withdraw(1, "bank", platform=True), 403, "platform_account")
