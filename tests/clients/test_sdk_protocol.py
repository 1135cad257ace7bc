"""The SDK parses the exchange's answers with the shapes the exchange serves
(``ledger.protocol``), not with copies of its own."""

from __future__ import annotations

import clients.sdk as sdk
from ledger.protocol import accounts, health


def test_the_sdk_exports_the_shared_shapes_themselves() -> None:
    assert sdk.Health is health.Health
    assert sdk.DatabaseStatus is health.DatabaseStatus
    assert sdk.ChainStatus is health.ChainStatus
    assert sdk.Balance is accounts.Balance
    assert sdk.PLATFORM_ACCOUNT == accounts.PLATFORM_ACCOUNT
