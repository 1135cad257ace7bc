"""``ledger.protocol.health``: the ``GET /health`` answer, parsed strictly."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.protocol.health import ChainStatus, DatabaseStatus, Health
from ledger.records import RecordFormatError

DATABASE = {"ok": True, "backend": "sqlite", "url": "sqlite:///x.db", "detail": None}
CHAIN = {
    "ok": True,
    "configured": True,
    "rpc_url": "http://127.0.0.1:8545",
    "chain_id": 31337,
    "block_number": 7,
    "registry_address": "0x" + "11" * 20,
    "registry_deployed": True,
    "detail": None,
}


def test_a_healthy_answer_parses_and_ignores_unknown_fields() -> None:
    health = Health.from_dict(
        {"status": "ok", "database": DATABASE, "chain": CHAIN, "version": "later"}
    )
    assert health.ok
    assert health.database == DatabaseStatus(True, "sqlite", "sqlite:///x.db")
    assert health.chain == ChainStatus(
        ok=True,
        configured=True,
        rpc_url="http://127.0.0.1:8545",
        chain_id=31337,
        block_number=7,
        registry_address="0x" + "11" * 20,
        registry_deployed=True,
    )


def test_a_degraded_answer_without_a_chain_parses() -> None:
    chain = {"ok": False, "configured": False, "detail": "no chain RPC URL configured"}
    health = Health.from_dict({"status": "degraded", "database": DATABASE, "chain": chain})
    assert not health.ok
    assert health.chain.detail == "no chain RPC URL configured"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param([], "", id="not-an-object"),
        pytest.param(
            {"status": "fine", "database": DATABASE, "chain": CHAIN}, "status", id="status"
        ),
        pytest.param({"status": "ok", "chain": CHAIN}, "database", id="no-database"),
        pytest.param(
            {"status": "ok", "database": DATABASE | {"ok": 1}, "chain": CHAIN},
            "database",
            id="database-ok-not-boolean",
        ),
        pytest.param(
            {"status": "ok", "database": DATABASE | {"detail": 5}, "chain": CHAIN},
            "database.detail",
            id="database-detail",
        ),
        pytest.param(
            {"status": "ok", "database": DATABASE, "chain": CHAIN | {"configured": None}},
            "chain",
            id="chain-configured",
        ),
        pytest.param(
            {"status": "ok", "database": DATABASE, "chain": CHAIN | {"chain_id": True}},
            "chain.chain_id",
            id="chain-id-boolean",
        ),
        pytest.param(
            {"status": "ok", "database": DATABASE, "chain": CHAIN | {"registry_deployed": "yes"}},
            "chain.registry_deployed",
            id="registry-deployed",
        ),
    ],
)
def test_ill_formed_answers_are_refused_naming_the_field(body: Any, path: str) -> None:
    with pytest.raises(RecordFormatError) as refused:
        Health.from_dict(body)
    assert refused.value.path == path
