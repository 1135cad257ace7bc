"""Payouts through ``shancheng`` against a real exchange: a provider and a buyer
withdraw (``provider withdraw`` / ``buyer withdraw``, one command), the operator lists
(``operator payouts --state pending``), pays and rejects; refusals are one line with
the server's code; amounts are integer fen (``1.5`` is a usage error)."""

from __future__ import annotations

from typing import Any

import pytest
from test_cli_market import Market, clean_env, market  # noqa: F401

from exchange.books import audit_books


def test_withdraw_list_pay_and_reject(market: Market) -> None:  # noqa: F811
    provider, provider_id = market.participant("provider")
    buyer, buyer_id = market.participant("buyer")
    provider.ok("provider", "register")
    buyer.ok("buyer", "register")
    for key_id in (provider_id, buyer_id):
        market.operator.ok("operator", "deposit", key_id, "10000", "--reference", "bank")

    asked = provider.ok("provider", "withdraw", "6000", "--to", "ICBC 6222 0000 0001")
    assert (asked["state"], asked["amount"], asked["participant"]) == ("pending", 6000, provider_id)
    assert asked["account"] == {"key_id": provider_id, "available": 4000, "held": 6000}
    unspent = buyer.ok("buyer", "withdraw", "2500", "--to", "BOC 6217 0000 0002")
    assert unspent["participant"] == buyer_id

    pending = market.operator.ok("operator", "payouts", "--state", "pending")
    assert {w["id"] for w in pending["items"]} == {asked["id"], unspent["id"]}
    listed = market.operator.run("operator", "payouts")
    assert listed.exit_code == 0, listed
    assert "¥60.00" in listed.stdout and "¥25.00" in listed.stdout

    paid = market.operator.ok(
        "operator", "payouts", "pay", asked["id"], "--reference", "ICBC 20261207-0001"
    )
    assert (paid["state"], paid["transfer_reference"]) == ("paid", "ICBC 20261207-0001")
    rejected = market.operator.ok(
        "operator", "payouts", "reject", unspent["id"], "--reason", "name differs"
    )
    assert rejected["state"] == "rejected"
    assert rejected["account"] == {"key_id": buyer_id, "available": 10000, "held": 0}
    assert market.operator.ok("operator", "payouts", "--state", "pending")["items"] == []
    assert [w["id"] for w in provider.ok("operator", "payouts")["items"]] == [asked["id"]]

    message = market.operator.fails("operator", "payouts", "pay", asked["id"], "--reference", "x")
    assert message.startswith("withdrawal_decided:") and "(HTTP 409)" in message
    message = provider.fails("provider", "withdraw", "4001", "--to", "ICBC")
    assert message.startswith("insufficient_funds:") and "(HTTP 402)" in message
    message = buyer.fails("operator", "payouts", "reject", asked["id"], "--reason", "x")
    assert message.startswith("role_forbidden:")
    report = audit_books(market.app.state.engine)
    assert report.discrepancies == []
    assert (report.reconciliation.deposits, report.reconciliation.paid_withdrawals) == (
        20000,
        6000,
    )


@pytest.mark.parametrize("amount", ["1.5", "0", "-5", "ten", "1e3"])
def test_amounts_are_whole_fen(market: Market, amount: Any) -> None:  # noqa: F811
    provider, _ = market.participant("provider")
    provider.ok("provider", "register")
    refused = provider.run("provider", "withdraw", "--to", "bank", "--", amount)
    assert refused.exit_code == 2, refused
    assert "amount_fen" in refused.stderr
    assert provider.ok("operator", "payouts")["items"] == []


def test_withdraw_fees_is_the_operators_and_needs_fees(market: Market) -> None:  # noqa: F811
    message = market.operator.fails("operator", "payouts", "withdraw-fees", "100", "--to", "ICBC")
    assert message.startswith("insufficient_funds:") and "(HTTP 402)" in message
    provider, _ = market.participant("provider")
    provider.ok("provider", "register")
    message = provider.fails("operator", "payouts", "withdraw-fees", "100", "--to", "ICBC")
    assert message.startswith("platform_account:") and "(HTTP 403)" in message
    assert market.operator.ok("operator", "payouts")["items"] == []
