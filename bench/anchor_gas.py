"""Gas per anchor on a throw-away anvil devnet: the first anchor vs the steady state.

.venv/bin/python bench/anchor_gas.py [--anchors 20] [--batch 1000]

Starts its own devnet (stopped on exit, error or Ctrl-C), deploys a fresh
AnchorRegistry, anchors ``--anchors`` checkpoints with growing tree sizes and
SM3 roots, and prints the gas of each. The last two lines are the figures:

    figure anchor_gas_first <n> gas
    figure anchor_gas_steady <n> gas

"First" is the first anchor after deployment; "steady" is the median of the
rest. The registry packs its hot counters with the owner address, so that slot
is never zero and the first anchor pays no zero-to-non-zero premium: both write
two fresh storage slots (root; timestamp + anchorer) and one warm counter slot.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient
from devnet.launcher import Devnet, DevnetConfig
from ledger.sm3 import sm3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=20, help="checkpoints to anchor (>= 2)")
    parser.add_argument(
        "--batch", type=int, default=1000, help="records per checkpoint (tree size step)"
    )
    args = parser.parse_args()
    if args.anchors < 2:
        parser.error("--anchors must be at least 2")

    with (
        tempfile.TemporaryDirectory(prefix="anchor-gas-") as state_dir,
        Devnet(DevnetConfig(state_dir=Path(state_dir))) as node,
    ):
        chain = ChainClient(node.rpc_url, DEVNET_TEST_ACCOUNTS[0].private_key)
        deployed = chain.deploy_registry()
        registry = chain.registry(deployed.address)
        print(f"devnet {node.rpc_url} (chain {chain.chain_id()})")
        print(f"deploy AnchorRegistry at {deployed.address}: {deployed.gas_used} gas")
        print(f"{'#':>4} {'tree size':>12} {'gas':>8} {'ms':>7}")
        gas: list[int] = []
        for i in range(1, args.anchors + 1):
            tree_size = i * args.batch
            root = sm3(b"checkpoint %d" % tree_size)
            start = time.perf_counter()
            sent = registry.anchor(tree_size, root)
            elapsed_ms = (time.perf_counter() - start) * 1000
            assert sent.gas_used is not None
            gas.append(sent.gas_used)
            print(f"{i:>4} {tree_size:>12} {sent.gas_used:>8} {elapsed_ms:>7.1f}")
        latest = registry.latest()
        assert latest is not None and latest.tree_size == args.anchors * args.batch

    first, steady = gas[0], int(statistics.median(gas[1:]))
    print(f"steady range {min(gas[1:])}..{max(gas[1:])} gas")
    for batch in (1, 100, 10_000):
        print(f"gas per record at {batch:>6} records/checkpoint: {steady / batch:,.1f}")
    print(f"figure anchor_gas_first {first} gas")
    print(f"figure anchor_gas_steady {steady} gas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
