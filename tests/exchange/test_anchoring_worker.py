"""The anchoring worker against a real anvil and a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from test_anchoring_support import (
    Crash,
    FakeClock,
    add_checkpoint,
    anchored_sizes,
    chain_client,
    crash_at,
    fresh_registry,
    make_worker,
    manual_mining,
    mine,
    root_of,
    row,
    rows,
    sqlite_engine,
)

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient, RegistryClient, SignedTx
from devnet.launcher import Devnet
from exchange.anchoring.models import AnchorState
from exchange.anchoring.worker import AnchorWorker

pytestmark = pytest.mark.chain


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return sqlite_engine(tmp_path)


@pytest.fixture
def chain(devnet: Devnet) -> ChainClient:
    return chain_client(devnet.rpc_url)


@pytest.fixture
def registry(chain: ChainClient) -> RegistryClient:
    return fresh_registry(chain)


# -- happy path ----------------------------------------------------------------------------


def test_pending_sent_anchored_final(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    root = add_checkpoint(engine, 5)
    seen: dict[str, object] = {}

    def at_step(step: str, tree_size: int) -> None:
        if step == "sent":  # committed, and not yet on the wire
            committed = row(engine, tree_size)
            assert committed.tx_hash is not None
            seen["state"] = committed.state
            seen["status"] = chain.transaction_status(committed.tx_hash).state

    worker = make_worker(engine, chain, registry, confirmations=3, on_step=at_step)
    report = worker.run_once()

    assert report.ok, report
    assert seen == {"state": AnchorState.SENT, "status": "unknown"}
    assert (report.created, report.signed, report.broadcast, report.anchored) == (
        (5,),
        (5,),
        (5,),
        (5,),
    )
    assert report.finalized == ()
    anchored = row(engine, 5)
    assert anchored.state == AnchorState.ANCHORED
    assert anchored.tx_hash is not None and anchored.raw_tx and anchored.nonce is not None
    receipt = chain.get_receipt(anchored.tx_hash)
    assert receipt is not None
    assert (anchored.block_number, anchored.block_hash) == (
        receipt.block_number,
        receipt.block_hash,
    )
    assert anchored.gas_used == receipt.gas_used > 0
    assert (anchored.chain_id, anchored.registry_address) == (chain.chain_id(), registry.address)
    on_chain = registry.anchor_of(5)
    assert on_chain is not None and on_chain.root == root

    mine(chain, 1)  # 2 confirmations: not yet final
    assert worker.run_once().finalized == ()
    mine(chain, 1)
    report = worker.run_once()
    assert report.finalized == (5,)
    assert row(engine, 5).state == AnchorState.FINAL
    assert worker.run_once().summary().endswith("checkpoint 5 is already anchored")
    assert anchored_sizes(registry) == [5]


def test_one_confirmation_is_final_at_once(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 1)
    report = make_worker(engine, chain, registry, confirmations=1).run_once()
    assert (report.anchored, report.finalized) == ((1,), (1,))


def test_no_checkpoint_no_anchor(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    report = make_worker(engine, chain, registry).run_once()
    assert report.ok and report.created == ()
    assert report.decision == "no checkpoint yet"
    assert registry.latest() is None


# -- policy --------------------------------------------------------------------------------


def test_threshold_and_interval(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    clock = FakeClock()
    worker = make_worker(engine, chain, registry, interval_s=60, size_threshold=100, clock_ms=clock)
    add_checkpoint(engine, 5)
    assert worker.run_once().anchored == (5,)  # the first checkpoint goes at once

    add_checkpoint(engine, 50)
    clock.advance(10)
    report = worker.run_once()
    assert report.created == ()
    assert "45 leaves waiting < 100" in report.decision

    add_checkpoint(engine, 105)  # 100 leaves since the last anchor: the threshold
    report = worker.run_once()
    assert report.anchored == (105,)
    assert "100 leaves waiting >= threshold 100" in report.decision

    add_checkpoint(engine, 110)
    clock.advance(59)
    assert worker.run_once().created == ()
    clock.advance(1)  # the interval has passed since the anchor of 105
    report = worker.run_once()
    assert report.anchored == (110,)
    assert anchored_sizes(registry) == [5, 105, 110]
    assert 50 not in rows(engine)  # never anchored on its own: 105 covers it


def test_at_most_one_unmined_anchor(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    worker = make_worker(engine, chain, registry, interval_s=0, receipt_wait_s=0.1)
    add_checkpoint(engine, 3)
    with manual_mining(chain):
        report = worker.run_once()
        assert (report.broadcast, report.waiting, report.anchored) == ((3,), (3,), ())
        add_checkpoint(engine, 7)
        report = worker.run_once()
        assert report.waiting == (3,) and report.created == ()
        assert report.decision == "anchor of tree size 3 still in flight"
        assert row(engine, 3).state == AnchorState.SENT
        mine(chain)
    report = worker.run_once()
    assert report.anchored == (3, 7)
    assert anchored_sizes(registry) == [3, 7]


# -- crash between the steps (in process; the real kill -9 is in test_anchoring_crash) ----


def _crashed_worker(
    engine: Engine, chain: ChainClient, registry: RegistryClient, step: str
) -> None:
    with pytest.raises(Crash):
        make_worker(engine, chain, registry, on_step=crash_at(step)).run_once()
    assert row(engine, 5).state == AnchorState.SENT


def test_crash_after_commit_before_broadcast_resends_the_same_transaction(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    _crashed_worker(engine, chain, registry, "sent")
    signed = row(engine, 5)
    assert signed.tx_hash is not None
    assert chain.transaction_status(signed.tx_hash).state == "unknown"  # never sent

    report = make_worker(engine, chain, registry).run_once()  # a new process, say
    assert (report.signed, report.broadcast, report.anchored) == ((), (5,), (5,))
    assert row(engine, 5).tx_hash == signed.tx_hash
    assert anchored_sizes(registry) == [5]


def test_crash_after_broadcast_only_records_the_receipt(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    _crashed_worker(engine, chain, registry, "broadcast")
    sent = row(engine, 5)
    report = make_worker(engine, chain, registry).run_once()
    assert (report.signed, report.broadcast, report.anchored) == ((), (), (5,))
    assert row(engine, 5).tx_hash == sent.tx_hash
    assert anchored_sizes(registry) == [5]


def test_a_consumed_nonce_is_signed_again(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    _crashed_worker(engine, chain, registry, "sent")
    stale = row(engine, 5)
    # Another transaction of the same account takes the nonce the stale one was signed with.
    other = chain.send_transaction(chain.address, b"")
    assert chain.wait_receipt(other).succeeded

    report = make_worker(engine, chain, registry).run_once()
    assert report.ok, report
    assert (report.signed, report.anchored) == ((5,), (5,))
    fresh = row(engine, 5)
    assert fresh.tx_hash != stale.tx_hash and fresh.nonce == (stale.nonce or 0) + 1
    assert anchored_sizes(registry) == [5]


def test_an_anchor_made_by_another_transaction_is_adopted(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    root = add_checkpoint(engine, 5)
    _crashed_worker(engine, chain, registry, "sent")
    # Meanwhile another authorised anchorer (an operator, by hand) anchors the same root.
    registry.add_anchorer(DEVNET_TEST_ACCOUNTS[1].address)
    operator = ChainClient(chain.rpc_url, DEVNET_TEST_ACCOUNTS[1].private_key)
    direct = operator.registry(registry.address).anchor(5, root)

    report = make_worker(engine, chain, registry).run_once()
    assert (report.signed, report.broadcast, report.anchored) == ((), (), (5,))
    adopted = row(engine, 5)
    assert adopted.tx_hash == direct.tx_hash and adopted.raw_tx is None
    assert adopted.block_number == direct.block_number
    assert "not by the transaction this row signed" in (adopted.detail or "")
    assert anchored_sizes(registry) == [5]


def test_the_registry_refusing_a_size_it_holds_with_our_root_is_success(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    root = add_checkpoint(engine, 5)
    registry.anchor(5, root)  # the database lost its row, say; the chain kept the anchor
    report = make_worker(engine, chain, registry).run_once()
    assert report.ok and (report.signed, report.anchored) == ((), (5,))
    assert anchored_sizes(registry) == [5]


# -- conflicts: loud, and anchoring halts --------------------------------------------------


def test_another_root_for_our_size_is_a_history_conflict(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    registry.anchor(5, root_of(5, b"rewritten"))
    add_checkpoint(engine, 5)
    worker = make_worker(engine, chain, registry)
    report = worker.run_once()
    assert report.conflicts == (5,) and not report.ok
    conflict = row(engine, 5)
    assert conflict.state == AnchorState.CONFLICT
    assert root_of(5, b"rewritten").hex() in (conflict.detail or "")
    assert root_of(5).hex() in (conflict.detail or "")

    add_checkpoint(engine, 9)
    report = worker.run_once()
    assert report.created == () and report.error is not None
    assert "history conflict at tree size 5" in report.error
    assert anchored_sizes(registry) == [5]


def test_a_foreign_latest_anchor_is_a_conflict(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    registry.anchor(20, root_of(20, b"not ours"))
    add_checkpoint(engine, 10)
    report = make_worker(engine, chain, registry).run_once()
    assert report.conflicts == (10,)
    assert "is not a checkpoint of this log" in (row(engine, 10).detail or "")


def test_an_unmined_anchor_covered_by_a_larger_one_is_superseded(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    _crashed_worker(engine, chain, registry, "sent")
    root10 = add_checkpoint(engine, 10)
    registry.anchor(10, root10)  # takes the nonce; the registry now holds 10

    report = make_worker(engine, chain, registry).run_once()
    assert report.ok, report
    assert report.superseded == (5,) and report.anchored == (10,)
    assert row(engine, 5).state == AnchorState.SUPERSEDED
    assert anchored_sizes(registry) == [10]


def test_rows_of_another_registry_halt_the_worker(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    make_worker(engine, chain, registry).run_once()
    other = fresh_registry(chain)
    add_checkpoint(engine, 6)
    report = make_worker(engine, chain, other).run_once()
    assert report.error is not None and "refusing to mix histories" in report.error
    assert other.latest() is None


def test_an_address_without_the_registry_is_refused(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    worker = AnchorWorker(engine, chain, chain.address or "", interval_s=0, size_threshold=1)
    report = worker.run_once()
    assert report.error is not None and "no AnchorRegistry" in report.error
    assert rows(engine) == {}


# -- reorgs --------------------------------------------------------------------------------


def test_an_anchor_dropped_by_a_revert_is_anchored_again(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    root = add_checkpoint(engine, 5)
    worker = make_worker(engine, chain, registry, confirmations=3)
    snapshot = chain.rpc("evm_snapshot")
    assert worker.run_once().anchored == (5,)
    first = row(engine, 5)
    assert chain.rpc("evm_revert", [snapshot]) is True
    assert registry.anchor_of(5) is None  # the chain forgot it

    report = worker.run_once()
    assert report.ok, report
    assert (report.reorged, report.broadcast, report.anchored) == ((5,), (5,), (5,))
    again = row(engine, 5)
    assert again.state == AnchorState.ANCHORED
    assert again.tx_hash == first.tx_hash  # the same signed transaction, re-sent
    receipt = chain.get_receipt(again.tx_hash or "")
    assert receipt is not None and again.block_hash == receipt.block_hash
    held = registry.anchor_of(5)
    assert held is not None and held.root == root
    assert anchored_sizes(registry) == [5]


def test_an_anchor_dropped_by_anvil_reorg_is_anchored_again(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    worker = make_worker(engine, chain, registry, confirmations=4)
    assert worker.run_once().anchored == (5,)
    mined = row(engine, 5)
    mine(chain, 1)
    chain.rpc("anvil_reorg", [2, []])  # replace the anchor's block and the next one
    assert chain.get_receipt(mined.tx_hash or "") is None
    replaced = chain.block(mined.block_number or 0)
    assert replaced is not None and replaced.hash != mined.block_hash

    report = worker.run_once()
    assert (report.reorged, report.anchored) == ((5,), (5,))
    assert row(engine, 5).block_hash != mined.block_hash
    assert anchored_sizes(registry) == [5]
    mine(chain, 3)
    assert worker.run_once().finalized == (5,)


def test_an_anchor_moved_to_another_block_stays_anchored(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 5)
    worker = make_worker(engine, chain, registry, confirmations=5)
    snapshot = chain.rpc("evm_snapshot")
    worker.run_once()
    first = row(engine, 5)
    assert first.tx_hash and first.raw_tx
    chain.rpc("evm_revert", [snapshot])
    mine(chain, 1)  # another block takes the anchor's height
    chain.broadcast(SignedTx(first.tx_hash, "0x" + first.raw_tx.hex(), 0, ""))  # re-mined later
    moved = chain.wait_receipt(first.tx_hash)
    assert moved.block_number == (first.block_number or 0) + 1

    report = worker.run_once()
    assert report.reorged == (5,) and report.broadcast == () and report.anchored == ()
    now = row(engine, 5)
    assert now.state == AnchorState.ANCHORED
    assert (now.block_number, now.block_hash) == (moved.block_number, moved.block_hash)
    assert "moved by a reorg" in (now.detail or "")


# -- the loop ------------------------------------------------------------------------------


def test_the_thread_runs_passes_until_stopped(
    engine: Engine, chain: ChainClient, registry: RegistryClient
) -> None:
    add_checkpoint(engine, 4)
    worker = make_worker(engine, chain, registry, confirmations=1, poll_s=0.02)
    worker.start()
    try:
        assert worker.running
        deadline = time.monotonic() + 30
        while rows(engine).get(4) is None or row(engine, 4).state != AnchorState.FINAL:
            assert time.monotonic() < deadline, rows(engine)
            time.sleep(0.02)
    finally:
        worker.stop()
    assert not worker.running
    assert anchored_sizes(registry) == [4]
