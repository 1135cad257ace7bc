"""The sequencer and the node store: checkpoints, proofs from stored nodes, racing
sequencers, restarts, crashes mid-integration, and a tampered node."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, event, func, select, update
from sqlmodel import Session, col

from exchange.db import make_engine
from exchange.log import nodes, queries, sequencer
from exchange.log.errors import CorruptTreeError
from exchange.log.models import CheckpointRow, TreeNode
from exchange.log.nodes import StoredTree
from exchange.log.sequencer import Sequencer, integrate, integrate_pending
from exchange.log.service import append_many
from exchange.log.testing import LogDatabase, isolated_database
from ledger.merkle import (
    InMemoryTree,
    NodeID,
    NodeNotFoundError,
    RootMismatchError,
    verify_consistency,
    verify_inclusion,
)
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as db:
        yield db


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def actor() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _append(db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey, n: int) -> list[bytes]:
    """Append ``n`` fresh records; return their leaf hashes."""
    signed = [
        sign_record(actor, "listing.published", {"n": i, "r": os.urandom(4).hex()})
        for i in range(n)
    ]
    with Session(db.engine) as session:
        accepted = append_many(session, [(s, actor.public_key()) for s in signed], log_key)
    return [a.promise.leaf_hash for a in accepted]


def _checkpoints(db: LogDatabase) -> list[CheckpointRow]:
    with Session(db.engine) as session:
        return list(
            session.execute(select(CheckpointRow).order_by(col(CheckpointRow.tree_size))).scalars()
        )


def _node_count(db: LogDatabase) -> int:
    with Session(db.engine) as session:
        count: int = session.execute(select(func.count()).select_from(TreeNode)).scalar_one()
        return count


def _assert_tree_matches(db: LogDatabase, leaves: list[bytes], log_key: SM2PrivateKey) -> None:
    """Every checkpoint is signed and has the reference root; the node store holds
    exactly the reference tree's nodes."""
    reference = InMemoryTree(leaves)
    rows = _checkpoints(db)
    assert rows and rows[-1].tree_size == len(leaves)
    for row in rows:
        checkpoint = queries.checkpoint_from_row(row)
        checkpoint.verify(log_key.public_key())
        assert checkpoint.root == reference.root(checkpoint.tree_size)
    assert _node_count(db) == reference.node_count == 2 * len(leaves) - len(leaves).bit_count()


def test_integration_publishes_signed_checkpoints_and_serves_valid_proofs(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    factory = log_db.session_factory()
    assert integrate(factory, log_key) is None  # nothing pending
    leaves = _append(log_db, log_key, actor, 13)
    made = integrate_pending(factory, log_key, max_batch=5)
    assert [c.tree_size for c in made] == [5, 10, 13]
    assert integrate(factory, log_key) is None
    _assert_tree_matches(log_db, leaves, log_key)

    reference = InMemoryTree(leaves)
    with factory() as session:
        for size in range(1, 14):
            root = reference.root(size)
            for index in range(size):
                proof = queries.inclusion_proof(session, size, index=index)
                assert proof.leaf_hash == leaves[index]
                verify_inclusion(leaves[index], index, size, proof.hashes, root)
            by_hash = queries.inclusion_proof(session, size, leaf_hash=leaves[size - 1])
            assert by_hash.index == size - 1
            for first in range(1, size + 1):
                consistency = queries.consistency_proof(session, first, size)
                verify_consistency(first, size, reference.root(first), root, consistency.hashes)


def test_proofs_read_O_log_n_nodes_in_one_query(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    leaves = _append(log_db, log_key, actor, 100)
    integrate_pending(log_db.session_factory(), log_key)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "tree_node" in statement:
            statements.append(statement)

    event.listen(log_db.engine, "before_cursor_execute", count)
    try:
        with Session(log_db.engine) as session:
            proof = queries.inclusion_proof(session, 100, index=37)
            queries.consistency_proof(session, 37, 100)
    finally:
        event.remove(log_db.engine, "before_cursor_execute", count)
    assert len(statements) == 2  # one batched read per proof
    verify_inclusion(leaves[37], 37, 100, proof.hashes, InMemoryTree(leaves).root())


def test_two_sequencers_racing_build_one_tree(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    leaves = _append(log_db, log_key, actor, 120)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        # Each sequencer has its own engine: separate connections, as in two processes.
        engine = make_engine(log_db.url)
        try:
            barrier.wait()
            integrate_pending(lambda: Session(engine), log_key, max_batch=7)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _assert_tree_matches(log_db, leaves, log_key)
    sizes = [row.tree_size for row in _checkpoints(log_db)]
    assert sizes == sorted(set(sizes))
    assert all(b - a <= 7 for a, b in zip([0, *sizes], sizes, strict=False))


def test_a_restart_resumes_integration(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    leaves = _append(log_db, log_key, actor, 11)
    integrate_pending(log_db.session_factory(), log_key)
    log_db.engine.dispose()

    engine = make_engine(log_db.url)  # a new process, in effect
    try:
        restarted = LogDatabase(log_db.url, engine)
        leaves += _append(restarted, log_key, actor, 6)
        [checkpoint] = integrate_pending(restarted.session_factory(), log_key)
        assert checkpoint.tree_size == 17
        _assert_tree_matches(restarted, leaves, log_key)
        with Session(engine) as session:
            proof = queries.consistency_proof(session, 11, 17)
        verify_consistency(11, 17, InMemoryTree(leaves[:11]).root(), checkpoint.root, proof.hashes)
    finally:
        engine.dispose()


def test_a_crash_mid_integration_writes_nothing_and_the_next_run_completes(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leaves = _append(log_db, log_key, actor, 9)
    integrate(log_db.session_factory(), log_key, max_batch=4)
    nodes_before = _node_count(log_db)

    real_save = nodes.save_nodes

    def save_then_crash(session: Session, completed: object) -> int:
        real_save(session, completed)  # type: ignore[arg-type]
        session.flush()
        raise RuntimeError("killed after writing the nodes")

    monkeypatch.setattr(sequencer, "save_nodes", save_then_crash)
    with pytest.raises(RuntimeError):
        integrate(log_db.session_factory(), log_key)
    assert [row.tree_size for row in _checkpoints(log_db)] == [4]
    assert _node_count(log_db) == nodes_before

    monkeypatch.setattr(sequencer, "save_nodes", real_save)
    assert [c.tree_size for c in integrate_pending(log_db.session_factory(), log_key)] == [9]
    _assert_tree_matches(log_db, leaves, log_key)


def test_a_tampered_stored_node_makes_the_proof_fail(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    leaves = _append(log_db, log_key, actor, 8)
    [checkpoint] = integrate_pending(log_db.session_factory(), log_key)
    # Replace the hash of the subtree over leaves 4..7 (level 2, index 1): the
    # inclusion proof of leaf 0 carries it.
    with Session(log_db.engine) as session:
        session.execute(
            update(TreeNode)
            .where(col(TreeNode.level) == 2, col(TreeNode.index) == 1)
            .values(hash=b"\x66" * 32)
        )
        session.commit()
    with Session(log_db.engine) as session:
        proof = queries.inclusion_proof(session, 8, index=0)
    assert b"\x66" * 32 in proof.hashes
    with pytest.raises(RootMismatchError) as caught:
        verify_inclusion(leaves[0], 0, 8, proof.hashes, checkpoint.root)
    assert caught.value.expected == checkpoint.root


def test_a_missing_node_is_a_storage_fault(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    _append(log_db, log_key, actor, 4)
    integrate_pending(log_db.session_factory(), log_key)
    with Session(log_db.engine) as session:
        with pytest.raises(NodeNotFoundError):
            StoredTree(session).get_nodes([NodeID(0, 0), NodeID(5, 0)])
        assert StoredTree(session).get_nodes([]) == []
        session.execute(delete(TreeNode).where(col(TreeNode.level) == 1, col(TreeNode.index) == 1))
        session.commit()
    with Session(log_db.engine) as session, pytest.raises(CorruptTreeError) as caught:
        queries.inclusion_proof(session, 4, index=0)
    assert caught.value.status == 500 and "level 1 index 1" in caught.value.message


def test_the_background_sequencer_integrates_and_stops(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    worker = Sequencer(log_db.session_factory(), log_key, interval=0.02, max_batch=3)
    worker.start()
    try:
        leaves = _append(log_db, log_key, actor, 7)
        done = threading.Event()
        for _ in range(1000):
            rows = _checkpoints(log_db)
            if rows and rows[-1].tree_size == 7:
                done.set()
                break
            done.wait(0.02)
        assert done.is_set()
    finally:
        worker.stop()
    worker.stop()  # idempotent
    _assert_tree_matches(log_db, leaves, log_key)
