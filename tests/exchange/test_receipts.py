"""``GET /receipts/{index}``: Bundle v1 at the earliest anchored checkpoint covering
the entry, ``receipt_pending`` before that, verified by ``ledger.audit`` offline,
against a fake registry, and against a real anvil; tampered databases are caught
at the step that should catch them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlmodel import Session, col

from clients.audit import ChainAnchorSource
from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient
from devnet.launcher import Devnet
from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.app import create_app
from exchange.log.models import CheckpointRow, LogEntry, PromiseBatchRow, TreeNode
from exchange.log.sequencer import integrate_pending
from exchange.log.service import append_many
from exchange.log.testing import LogDatabase, isolated_database
from exchange.settings import Settings
from ledger.audit import AuditError, OnChainAnchor, StepStatus, verify_bundle
from ledger.bundle import Bundle
from ledger.checkpoint import sign_checkpoint, sign_promise_batch
from ledger.merkle import inclusion_proof_size
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
REGISTRY = "0x" + "5a" * 20


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as db:
        yield db


@pytest.fixture
def app(log_db: LogDatabase, tmp_path: Path) -> FastAPI:
    return create_app(
        Settings(data_dir=tmp_path / "data", database_url=log_db.url, sequencer_enabled=False)
    )


class FakeRegistry:
    """An AnchorSource holding what the test says is on chain."""

    def __init__(self, chain_id: int, address: str) -> None:
        self.chain_id, self.address = chain_id, address.lower()
        self.roots: dict[int, bytes] = {}

    def anchored_root(
        self, chain_id: int, registry_address: str, tree_size: int
    ) -> OnChainAnchor | None:
        if chain_id != self.chain_id or registry_address.lower() != self.address:
            return None
        root = self.roots.get(tree_size)
        if root is None:
            return None
        return OnChainAnchor(root=root, block_number=10, tx_hash=None, confirmations=6)


def _fill(app: FastAPI, count: int, max_batch: int) -> list[SignedRecord]:
    """Append ``count`` records and integrate them in checkpoints of ``max_batch``."""
    actor = SM2PrivateKey.generate()
    signed = [sign_record(actor, "order.placed", {"order": f"o-{n}"}) for n in range(count)]
    with app.state.session_factory() as session:
        append_many(session, [(s, actor.public_key()) for s in signed], app.state.log_key)
    integrate_pending(app.state.session_factory, app.state.log_key, max_batch)
    return signed


def _anchor(
    app: FastAPI,
    tree_size: int,
    state: AnchorState,
    *,
    chain_id: int = 31337,
    registry: str = REGISTRY,
    tx_hash: str | None = None,
    block_number: int = 7,
) -> bytes:
    """Record an anchor row for the checkpoint of ``tree_size``; return its root."""
    now = int(time.time() * 1000)
    with app.state.session_factory() as session:
        checkpoint = session.get(CheckpointRow, tree_size)
        assert checkpoint is not None
        root = checkpoint.root
        session.add(
            AnchorRow(
                tree_size=tree_size,
                root=root,
                state=state,
                chain_id=chain_id,
                registry_address=registry,
                tx_hash=tx_hash or "0x" + f"{tree_size:064x}",
                block_number=block_number,
                block_hash="0x" + "bb" * 32,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    return bytes(root)


def _receipt(url: str, index: int) -> Bundle:
    response = httpx.get(f"{url}/receipts/{index}")
    assert response.status_code == 200, response.text
    return Bundle.from_dict(response.json())


def _failed_step(bundle: Bundle, anchors: Any = None) -> str:
    with pytest.raises(AuditError) as caught:
        verify_bundle(bundle, anchors=anchors)
    report = caught.value.report
    assert report.failed_step is not None and report.failed_step.name == caught.value.step
    return caught.value.step


def test_receipts_cover_entries_with_the_earliest_anchored_checkpoint(
    app: FastAPI, live_server: Any
) -> None:
    signed = _fill(app, 10, max_batch=4)  # checkpoints 4, 8, 10
    registry = FakeRegistry(31337, REGISTRY)
    with live_server(app) as url:
        response = httpx.get(f"{url}/receipts/1")
        assert response.status_code == 409 and response.json()["code"] == "receipt_pending"

        registry.roots[8] = _anchor(app, 8, AnchorState.ANCHORED)
        registry.roots[4] = _anchor(app, 4, AnchorState.FINAL)
        _anchor(app, 10, AnchorState.SENT)  # not mined: does not count
        log_key = app.state.log_key.public_key()

        for index, expected_size in [(0, 4), (3, 4), (4, 8), (7, 8)]:
            bundle = _receipt(url, index)
            assert bundle.checkpoint.tree_size == bundle.inclusion.tree_size == expected_size
            assert bundle.inclusion.index == bundle.promise.index == index
            assert bundle.record == signed[index]
            assert bundle.log_public_key == log_key
            assert bundle.anchor.tx_hash == "0x" + f"{expected_size:064x}"
            assert bundle.anchor.registry_address == REGISTRY
            report = verify_bundle(bundle, anchors=None, trusted_log_key=log_key)
            assert [s.status for s in report.steps][-1] is StepStatus.SKIPPED
            online = verify_bundle(bundle, anchors=registry, trusted_log_key=log_key)
            assert all(s.status is StepStatus.PASSED for s in online.steps)

        for index in (8, 9):
            response = httpx.get(f"{url}/receipts/{index}")
            assert response.status_code == 409 and response.json()["code"] == "receipt_pending"
        response = httpx.get(f"{url}/receipts/10")
        assert response.status_code == 404 and response.json()["code"] == "entry_not_found"

        # The bundle names the registry it was anchored in; the auditor trusting
        # another registry, or a registry not holding the root, fails it.
        bundle = _receipt(url, 0)
        with pytest.raises(AuditError) as caught:
            verify_bundle(bundle, anchors=registry, trusted_registry="0x" + "77" * 20)
        assert caught.value.step == "chain_anchor"
        elsewhere = FakeRegistry(31337, REGISTRY)
        assert _failed_step(bundle, anchors=elsewhere) == "chain_anchor"


def test_tampered_databases_are_caught_at_the_right_step(
    app: FastAPI, log_db: LogDatabase, live_server: Any
) -> None:
    _fill(app, 8, max_batch=8)
    _anchor(app, 8, AnchorState.FINAL)
    engine = log_db.engine
    with live_server(app) as url:
        for index in range(8):
            verify_bundle(_receipt(url, index), anchors=None)

        # An edited record: its actor's signature no longer holds.
        with Session(engine) as session:
            entry = session.get(LogEntry, 2)
            assert entry is not None
            edited = entry.leaf.replace(b'"o-2"', b'"o-X"')
            session.execute(update(LogEntry).where(col(LogEntry.index) == 2).values(leaf=edited))
            session.commit()
        assert _failed_step(_receipt(url, 2)) == "actor_signature"

        # Two entries' records swapped: each now sits at the other's promised index.
        with Session(engine) as session:
            four, five = session.get(LogEntry, 4), session.get(LogEntry, 5)
            assert four is not None and five is not None
            leaf4, leaf5 = four.leaf, five.leaf
            session.execute(update(LogEntry).where(col(LogEntry.index) == 4).values(leaf=leaf5))
            session.execute(update(LogEntry).where(col(LogEntry.index) == 5).values(leaf=leaf4))
            session.commit()
        assert _failed_step(_receipt(url, 4)) == "leaf_hash"

        # A replaced tree node: the inclusion proof no longer reaches the root.
        with Session(engine) as session:
            session.execute(
                update(TreeNode)
                .where(col(TreeNode.level) == 0, col(TreeNode.index) == 1)
                .values(hash=b"\x01" * 32)
            )
            session.commit()
        assert _failed_step(_receipt(url, 0)) == "inclusion"

        # The checkpoint re-signed with another key.
        forger = SM2PrivateKey.generate()
        with Session(engine) as session:
            row = session.get(CheckpointRow, 8)
            assert row is not None
            forged = sign_checkpoint(forger, 8, row.root, row.timestamp)
            session.execute(
                update(CheckpointRow)
                .where(col(CheckpointRow.tree_size) == 8)
                .values(signature=forged.signature, log_key_id=forged.log_key_id)
            )
            session.commit()
        assert _failed_step(_receipt(url, 6)) == "checkpoint_signature"

        # A deleted entry has no receipt at all.
        with Session(engine) as session:
            session.execute(delete(LogEntry).where(col(LogEntry.index) == 7))
            session.commit()
        response = httpx.get(f"{url}/receipts/7")
        assert response.status_code == 404 and response.json()["code"] == "entry_not_found"


def test_a_tampered_promise_batch_is_caught_at_the_leaf_hash_step(
    app: FastAPI, log_db: LogDatabase, live_server: Any
) -> None:
    signed = _fill(app, 6, max_batch=6)  # one append_many: one promise batch of 6
    _anchor(app, 6, AnchorState.FINAL)
    engine = log_db.engine
    with Session(engine) as session:
        [batch] = session.execute(select(PromiseBatchRow)).scalars().all()
        original = (batch.signature, batch.log_key_id)
    with live_server(app) as url:
        for index in range(6):
            bundle = _receipt(url, index)
            assert bundle.promise.batch_first_index == 0 and bundle.promise.batch_size == 6
            assert len(bundle.promise.batch_proof) == inclusion_proof_size(index, 6)
            verify_bundle(bundle, anchors=None, trusted_log_key=app.state.log_key.public_key())

        # The batch re-signed by another key (over the same leaves, same statement).
        forger = SM2PrivateKey.generate()
        forged, _ = sign_promise_batch(forger, 0, [s.leaf_hash() for s in signed], batch.timestamp)
        _set_batch(engine, signature=forged.signature, log_key_id=forged.log_key_id)
        assert _failed_step(_receipt(url, 3)) == "leaf_hash"

        # Only the signature swapped for the forger's: it no longer verifies.
        _set_batch(engine, signature=forged.signature, log_key_id=original[1])
        assert _failed_step(_receipt(url, 1)) == "leaf_hash"

        # The batch said to be larger than it was: the statement is not the signed one.
        _set_batch(engine, signature=original[0], log_key_id=original[1])
        verify_bundle(_receipt(url, 2), anchors=None)
        _set_batch(engine, size=7)
        assert _failed_step(_receipt(url, 2)) == "leaf_hash"


def _set_batch(engine: Any, **values: Any) -> None:
    with Session(engine) as session:
        session.execute(update(PromiseBatchRow).values(**values))
        session.commit()


@pytest.mark.chain
def test_a_receipt_verifies_against_a_real_chain(
    app: FastAPI, devnet: Devnet, live_server: Any
) -> None:
    _fill(app, 5, max_batch=5)
    chain = ChainClient(devnet.rpc_url, DEVNET_TEST_ACCOUNTS[0].private_key)
    registry = chain.registry(chain.deploy_registry().address)
    other = chain.registry(chain.deploy_registry().address)
    with app.state.session_factory() as session:
        checkpoint = session.get(CheckpointRow, 5)
        assert checkpoint is not None
        root = checkpoint.root
    anchored = registry.anchor(5, root)
    assert anchored.block_number is not None
    _anchor(
        app,
        5,
        AnchorState.ANCHORED,
        chain_id=chain.chain_id(),
        registry=registry.address,
        tx_hash=anchored.tx_hash,
        block_number=anchored.block_number,
    )
    with live_server(app) as url:
        bundle = _receipt(url, 3)
    source = ChainAnchorSource(devnet.rpc_url)
    report = verify_bundle(
        bundle,
        anchors=source,
        trusted_log_key=app.state.log_key.public_key(),
        trusted_registry=registry.address,
    )
    assert [s.status for s in report.steps] == [StepStatus.PASSED] * 5

    moved = Bundle.from_dict(
        {
            **bundle.to_dict(),
            "anchor": {**bundle.anchor.to_dict(), "registry_address": other.address},
        }
    )
    assert _failed_step(moved, anchors=source) == "chain_anchor"
