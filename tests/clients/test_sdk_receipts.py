"""Receipts through the SDK on a real chain: a real uvicorn, a SQLite file, the
exchange's own sequencer and anchoring worker, a real anvil. A receipt is
pending until an anchored checkpoint covers it, then a bundle that
``verify_receipt`` (the code path of ``shancheng audit verify``) accepts online
and offline, and refuses, at the right step, once altered. ``audit_log``
walks the log like ``shancheng audit log``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_sdk_support import enrol

from clients.sdk import (
    AsyncExchangeClient,
    ExchangeClient,
    ReceiptPendingError,
    ResponseVerificationError,
)
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.app import create_app
from exchange.settings import Settings
from ledger.audit import AuditError, StepStatus
from ledger.bundle import Bundle
from ledger.sm2 import SM2PrivateKey

pytestmark = pytest.mark.chain


@dataclass
class Stack:
    url: str
    rpc_url: str
    registry: str
    bundles: list[Bundle]


@pytest.fixture(scope="module")
def stack(
    devnet: Devnet, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Stack]:
    """One exchange and registry for the module: records 0-3, their receipts."""
    tmp_path = tmp_path_factory.mktemp("sdk-receipts")
    deployment, _ = ensure_registry(devnet.rpc_url, tmp_path / "deployment.json")
    settings = Settings(
        data_dir=tmp_path / "var",
        rpc_url=devnet.rpc_url,
        registry_address=deployment.registry_address,
        sequencer_interval=0.05,
        anchor_interval_s=3600.0,  # after the first anchor, only the size threshold anchors
        anchor_size_threshold=3,
        anchor_confirmations=1,
        anchor_poll_s=0.05,
    )
    app = create_app(settings)
    authors = (SM2PrivateKey.generate(), SM2PrivateKey.generate())
    enrol(app.state.engine, *authors)
    with live_server(app) as url:
        bundles = _pending_then_anchored(url, *authors)
        yield Stack(url, devnet.rpc_url, deployment.registry_address, bundles)


def _checkpointed(client: ExchangeClient, size: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.checkpoint().tree_size >= size:
                return
        except Exception as exc:  # no checkpoint yet
            assert getattr(exc, "code", None) == "no_checkpoint", exc
        assert time.monotonic() < deadline, f"size {size} never checkpointed"
        time.sleep(0.05)


def _pending_then_anchored(url: str, alice: SM2PrivateKey, bob: SM2PrivateKey) -> list[Bundle]:
    with ExchangeClient(url, key=alice) as client:
        first = client.append(client.sign("note.added", {"listing": "L-0"}))
        bundles = [client.wait_for_receipt(first.index, timeout=60, interval=0.05)]  # 1st anchor

        second = client.append(client.sign("note.added", {"order": "O-1", "price_fen": 990}))
        _checkpointed(client, 2)
        # Integrated but 1 leaf < the threshold of 3: deterministically pending.
        with pytest.raises(ReceiptPendingError) as pending:
            client.receipt(second.index)
        assert (pending.value.status_code, pending.value.code) == (409, "receipt_pending")

        with ExchangeClient(url, key=bob) as other:
            more = other.append_many(
                [other.sign("note.added", {"order": f"O-{n}"}) for n in (2, 3)]
            )
        assert [a.index for a in more] == [2, 3]
        for index in (1, 2, 3):
            bundles.append(client.wait_for_receipt(index, timeout=60, interval=0.05))
    return bundles


def test_receipts_verify_online_and_offline(stack: Stack) -> None:
    with ExchangeClient(stack.url) as client:
        for index, bundle in enumerate(stack.bundles):
            assert bundle.promise.index == index
            report = client.verify_receipt(bundle, stack.rpc_url, stack.registry)
            assert report.ok
            assert [s.status for s in report.steps] == [StepStatus.PASSED] * 5
            offline = client.verify_receipt(bundle, offline=True)
            assert offline.steps[-1].name == "chain_anchor"
            assert offline.steps[-1].status is StepStatus.SKIPPED
        # The later entries are proven against the second anchored checkpoint.
        assert stack.bundles[1].checkpoint.tree_size == 4
        assert stack.bundles[0].checkpoint.tree_size == 1
        pinned = client.log_key().sm2_public_key
    with ExchangeClient(stack.url, trusted_log_key=pinned) as client:
        assert client.verify_receipt(stack.bundles[2], stack.rpc_url, stack.registry).ok


def _altered(bundle: Bundle, change: Any) -> Bundle:
    data = json.loads(bundle.to_json())
    change(data)
    return Bundle.from_dict(data)


def _flip_hex(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


def _edit_payload(d: dict[str, Any]) -> None:
    d["record"]["record"]["payload"]["order"] = "O-X"


def _promise_another_leaf(d: dict[str, Any]) -> None:
    d["promise"]["leaf_hash"] = "00" * 32


def _alter_inclusion(d: dict[str, Any]) -> None:
    d["inclusion"]["hashes"][0] = _flip_hex(d["inclusion"]["hashes"][0])


def _retimestamp_checkpoint(d: dict[str, Any]) -> None:
    d["checkpoint"]["timestamp"] += 1


def _foreign_registry(d: dict[str, Any]) -> None:
    d["anchor"]["registry_address"] = "0x" + "11" * 20


TAMPERED = [
    ("edited payload", _edit_payload, "actor_signature"),
    ("promise for another leaf", _promise_another_leaf, "leaf_hash"),
    ("altered inclusion proof", _alter_inclusion, "inclusion"),
    ("re-timestamped checkpoint", _retimestamp_checkpoint, "checkpoint_signature"),
    ("anchor in a foreign registry", _foreign_registry, "chain_anchor"),
]


@pytest.mark.parametrize(("desc", "change", "step"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_an_altered_receipt_fails_at_its_step(
    stack: Stack, desc: str, change: Any, step: str
) -> None:
    bundle = _altered(stack.bundles[1], change)
    with ExchangeClient(stack.url) as client, pytest.raises(AuditError) as caught:
        client.verify_receipt(bundle, stack.rpc_url, stack.registry)
    assert caught.value.step == step, (desc, caught.value)


def test_a_foreign_log_key_or_registry_is_refused(stack: Stack) -> None:
    bundle = stack.bundles[1]
    impostor = SM2PrivateKey.generate().public_key()
    with ExchangeClient(stack.url) as client:
        with pytest.raises(AuditError) as key:
            client.verify_receipt(bundle, stack.rpc_url, stack.registry, trusted_log_key=impostor)
        assert key.value.step == "checkpoint_signature"  # where the pinned key is enforced
        with pytest.raises(AuditError) as registry:
            client.verify_receipt(bundle, stack.rpc_url, "0x" + "22" * 20)
        assert registry.value.step == "chain_anchor"
        with pytest.raises(ValueError, match="rpc_url and registry"):
            client.verify_receipt(bundle)


def test_a_receipt_for_another_entry_is_refused(stack: Stack) -> None:
    body = stack.bundles[2].to_json()
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, content=body))
    with ExchangeClient(stack.url, transport=transport) as client:
        assert client.receipt(2) == stack.bundles[2]
        with pytest.raises(ResponseVerificationError):
            client.receipt(3)


def test_audit_log_walks_the_anchored_log(stack: Stack) -> None:
    with ExchangeClient(stack.url) as client:
        report = client.audit_log(stack.rpc_url, stack.registry, spot_checks=4)
    assert report.spot_checked == [0, 1, 2, 3]
    assert [a.tree_size for a in report.anchors] == [1, 4]
    assert {c.step for c in report.checks} == {"checkpoint", "consistency", "entry"}


def test_the_async_client_audits_the_same_way(stack: Stack) -> None:
    async def scenario() -> None:
        async with AsyncExchangeClient(stack.url) as client:
            bundle = await client.receipt(3)
            assert bundle == stack.bundles[3]
            assert (await client.verify_receipt(bundle, stack.rpc_url, stack.registry)).ok
            altered = _altered(bundle, _edit_payload)
            with pytest.raises(AuditError) as caught:
                await client.verify_receipt(altered, stack.rpc_url, stack.registry)
            assert caught.value.step == "actor_signature"
            report = await client.audit_log(stack.rpc_url, stack.registry, spot_indices=[1, 3])
            assert report.spot_checked == [1, 3]

    asyncio.run(scenario())


def test_bundles_survive_a_round_trip_through_a_file(stack: Stack, tmp_path: Path) -> None:
    from clients.audit import verify_bundle_file

    path = tmp_path / "receipt.json"
    path.write_text(stack.bundles[1].to_json(indent=2))
    assert verify_bundle_file(path, stack.rpc_url, stack.registry).ok
