"""The chain goes away and comes back: nothing is lost, nothing doubles, anchoring catches up.

Uses its own devnet (stopping the shared one would break other tests) and restarts
it on the same state directory and port, as an operator restarting a node would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_anchoring_support import (
    add_checkpoint,
    anchored_sizes,
    chain_client,
    fresh_registry,
    make_worker,
    row,
    rows,
    sqlite_engine,
)

from devnet.launcher import Devnet, DevnetConfig
from exchange.anchoring.models import AnchorState

pytestmark = [pytest.mark.chain, pytest.mark.slow]


class Node:
    """A devnet that the test can stop and start again on the same port and state."""

    def __init__(self, state_dir: Path) -> None:
        self.devnet = Devnet(DevnetConfig(state_dir=state_dir)).start()
        self.config = DevnetConfig(state_dir=state_dir, port=self.devnet.port)
        self.rpc_url = self.devnet.rpc_url

    def stop(self) -> None:
        self.devnet.stop()

    def restart(self) -> None:
        self.devnet = Devnet(self.config).start()
        assert self.devnet.rpc_url == self.rpc_url

    def close(self) -> None:
        self.devnet.stop()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(tmp_path / "chain")
    try:
        yield started
    finally:
        started.close()


def test_worker_survives_the_chain_going_down_and_catches_up(tmp_path: Path, node: Node) -> None:
    engine = sqlite_engine(tmp_path)
    chain = chain_client(node.rpc_url)
    registry = fresh_registry(chain)
    worker = make_worker(engine, chain, registry, interval_s=0, confirmations=2)

    add_checkpoint(engine, 5)
    assert worker.run_once().anchored == (5,)

    node.stop()
    add_checkpoint(engine, 20)  # the log keeps accepting records while the chain is away
    report = worker.run_once()
    assert not report.chain_available and not report.ok
    assert report.error is not None and "chain unavailable" in report.error
    assert set(rows(engine)) == {5} and row(engine, 5).state == AnchorState.ANCHORED
    add_checkpoint(engine, 30)
    assert not worker.run_once().chain_available

    node.restart()
    report = worker.run_once()
    assert report.ok, report
    assert report.anchored == (30,)  # the latest checkpoint: it covers 20 as well
    assert worker.run_once().finalized == (5,)  # the block of 30 confirms 5
    assert anchored_sizes(registry) == [5, 30]


def test_the_chain_dying_between_commit_and_broadcast(tmp_path: Path, node: Node) -> None:
    engine = sqlite_engine(tmp_path)
    chain = chain_client(node.rpc_url)
    registry = fresh_registry(chain)

    def chain_dies(step: str, _tree_size: int) -> None:
        if step == "sent":
            node.stop()

    root = add_checkpoint(engine, 8)
    report = make_worker(engine, chain, registry, on_step=chain_dies).run_once()
    assert not report.chain_available
    assert report.signed == (8,) and report.broadcast == ()
    kept = row(engine, 8)
    assert kept.state == AnchorState.SENT and kept.raw_tx

    node.restart()
    report = make_worker(engine, chain, registry, confirmations=1).run_once()
    assert report.ok, report
    assert (report.broadcast, report.anchored, report.finalized) == ((8,), (8,), (8,))
    assert row(engine, 8).tx_hash == kept.tx_hash
    held = registry.anchor_of(8)
    assert held is not None and held.root == root
    assert anchored_sizes(registry) == [8]
