"""``ledger.protocol.accounts``: a balance, parsed strictly."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.protocol.accounts import PLATFORM_ACCOUNT, Balance
from ledger.records import MAX_SAFE_INTEGER, RecordFormatError

KEY_ID = "ab" * 32


@pytest.mark.parametrize("key_id", [KEY_ID, PLATFORM_ACCOUNT])
def test_a_balance_parses_for_a_participant_or_the_platform(key_id: str) -> None:
    balance = Balance.from_dict({"key_id": key_id, "available": 5, "held": 0, "new": 1})
    assert balance == Balance(key_id, 5, 0)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param([], "account", id="not-an-object"),
        pytest.param({"key_id": "AB" * 32, "available": 1, "held": 0}, "account.key_id", id="hex"),
        pytest.param({"key_id": KEY_ID, "held": 0}, "account.available", id="missing"),
        pytest.param(
            {"key_id": KEY_ID, "available": True, "held": 0}, "account.available", id="bool"
        ),
        pytest.param(
            {"key_id": KEY_ID, "available": 1.0, "held": 0}, "account.available", id="float"
        ),
        pytest.param({"key_id": KEY_ID, "available": 1, "held": -1}, "account.held", id="negative"),
        pytest.param(
            {"key_id": KEY_ID, "available": MAX_SAFE_INTEGER + 1, "held": 0},
            "account.available",
            id="beyond-safe-integers",
        ),
    ],
)
def test_ill_formed_balances_are_refused_naming_the_field(body: Any, path: str) -> None:
    with pytest.raises(RecordFormatError) as refused:
        Balance.from_dict(body)
    assert refused.value.path == path
