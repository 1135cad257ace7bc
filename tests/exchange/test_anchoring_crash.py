"""A real ``kill -9`` of a worker process in the middle of anchoring, then recovery."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_anchoring_support import (
    DEV_KEY,
    add_checkpoint,
    anchored_sizes,
    anchoring_database,
    chain_client,
    fresh_registry,
    make_worker,
    row,
)
from test_orders import BACKENDS

from devnet.launcher import Devnet
from exchange.anchoring.lock import worker_lock
from exchange.anchoring.models import AnchorState
from exchange.log.testing import LogDatabase

REPO = Path(__file__).resolve().parents[2]

# A worker process that holds the single-worker lock, loops, and SIGKILLs itself
# at the given step: no handler, no finally, no flush runs.
_WORKER = """
import os, signal, sys
from contracts.chain import ChainClient
from exchange.anchoring.lock import worker_lock
from exchange.anchoring.worker import AnchorWorker
from exchange.db import make_engine

database_url, rpc_url, registry, key, die_at = sys.argv[1:6]
engine = make_engine(database_url)
lock = worker_lock(engine)
assert lock.try_acquire()

def hook(step, tree_size):
    if step == die_at:
        os.kill(os.getpid(), signal.SIGKILL)

worker = AnchorWorker(
    engine, ChainClient(rpc_url, key), registry,
    interval_s=0, size_threshold=1, confirmations=1, poll_s=0.05, on_step=hook,
)
worker.run_forever(guard=lock.ensure_held)
"""


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    with anchoring_database(request.param, tmp_path) as db:
        yield db


@pytest.mark.chain
@pytest.mark.parametrize("die_at", ["sent", "broadcast"])
def test_kill_9_mid_anchor_neither_loses_nor_doubles(
    database: LogDatabase, devnet: Devnet, die_at: str
) -> None:
    engine = database.engine
    chain = chain_client(devnet.rpc_url)
    registry = fresh_registry(chain)
    root = add_checkpoint(engine, 7)
    database_url = database.url

    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, database_url, devnet.rpc_url, registry.address,
         DEV_KEY, die_at],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, err.decode()

    died = row(engine, 7)
    assert died.state == AnchorState.SENT and died.tx_hash is not None
    expected_status = "unknown" if die_at == "sent" else "mined"
    assert chain.transaction_status(died.tx_hash).state == expected_status
    # The kernel released the dead worker's file lock; PostgreSQL ends its session
    # (and the advisory lock) once it sees the connection closed.
    lock = worker_lock(engine)
    gave_up = threading.Event()
    timer = threading.Timer(30, gave_up.set)
    timer.start()
    try:
        assert lock.acquire(wait=True, poll_s=0.05, stop=gave_up)
    finally:
        timer.cancel()
    try:
        report = make_worker(engine, chain, registry, confirmations=1).run_once()
    finally:
        lock.release()

    assert report.ok, report
    assert report.signed == ()  # nothing signed anew: the committed transaction was used
    assert report.broadcast == ((7,) if die_at == "sent" else ())
    assert report.anchored == (7,)
    recovered = row(engine, 7)
    assert recovered.state == AnchorState.FINAL and recovered.tx_hash == died.tx_hash
    assert anchored_sizes(registry) == [7]
    held = registry.anchor_of(7)
    assert held is not None and held.root == root
