"""Gas per record through the real anchoring worker, at 1, 100 and 10,000 records per anchor.

.venv/bin/python bench/anchor_records.py [--anchors 5]

Starts its own devnet (stopped on exit, error or Ctrl-C) and a throw-away SQLite
database, deploys a fresh AnchorRegistry, then for each batch size writes
synthetic checkpoints ``batch`` leaves apart and lets :class:`AnchorWorker` anchor
each one (one transaction per checkpoint, whatever its size). Gas per record is
the anchor transaction's gas divided by the records it covers; the median over
``--anchors`` anchors per batch size is reported:

    figure gas_per_record_batch_1 <n> gas
    figure gas_per_record_batch_100 <n> gas
    figure gas_per_record_batch_10000 <n> gas
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient
from devnet.launcher import Devnet, DevnetConfig
from exchange import migrations
from exchange.anchoring.worker import AnchorWorker
from exchange.db import make_engine
from exchange.log.models import CheckpointRow
from ledger.sm3 import sm3

BATCHES = (1, 100, 10_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--anchors", type=int, default=5, help="anchors per batch size (>= 1)")
    args = parser.parse_args()
    if args.anchors < 1:
        parser.error("--anchors must be at least 1")

    with (
        tempfile.TemporaryDirectory(prefix="anchor-records-") as work,
        Devnet(DevnetConfig(state_dir=Path(work) / "chain")) as node,
    ):
        engine = make_engine(f"sqlite:///{Path(work) / 'exchange.db'}")
        migrations.upgrade(engine)
        chain = ChainClient(node.rpc_url, DEVNET_TEST_ACCOUNTS[0].private_key, poll_interval=0.01)
        registry = chain.deploy_registry()
        worker = AnchorWorker(
            engine, chain, registry.address, interval_s=0, size_threshold=1, confirmations=1
        )
        print(f"devnet {node.rpc_url} (chain {chain.chain_id()}), registry {registry.address}")
        print(f"{'batch':>7} {'tree size':>10} {'gas':>8} {'gas/record':>12} {'ms':>7}")
        tree_size, medians = 0, dict[int, float]()
        for batch in BATCHES:
            per_record: list[float] = []
            for _ in range(args.anchors):
                tree_size += batch
                _add_checkpoint(engine, tree_size)
                started = time.perf_counter()
                report = worker.run_once()
                elapsed_ms = (time.perf_counter() - started) * 1000
                if report.anchored != (tree_size,):
                    raise SystemExit(f"anchoring {tree_size} failed: {report.summary()}")
                gas = worker.store.get(tree_size)
                assert gas is not None and gas.gas_used is not None
                per_record.append(gas.gas_used / batch)
                print(
                    f"{batch:>7} {tree_size:>10} {gas.gas_used:>8} "
                    f"{gas.gas_used / batch:>12.4f} {elapsed_ms:>7.1f}"
                )
            medians[batch] = statistics.median(per_record)
        engine.dispose()

    for batch in BATCHES:
        print(f"figure gas_per_record_batch_{batch} {medians[batch]:.6g} gas")
    return 0


def _add_checkpoint(engine: Engine, tree_size: int) -> None:
    with Session(engine) as session:
        session.add(
            CheckpointRow(
                tree_size=tree_size,
                root=sm3(b"synthetic checkpoint %d" % tree_size),
                timestamp=time.time_ns() // 1_000_000,
                log_key_id="00" * 32,
                signature=b"synthetic: the worker does not verify checkpoints",
            )
        )
        session.commit()


if __name__ == "__main__":
    sys.exit(main())
