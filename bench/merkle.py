"""Micro-benchmark of ledger.merkle: appends, proofs from a node store, verification.

.venv/bin/python bench/merkle.py [--leaves 100000] [--proofs 2000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from ledger.merkle import (
    CompactRange,
    InMemoryTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


def timed(label: str, count: int, fn: Callable[[], object]) -> None:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<40} {count:>9} in {elapsed:7.3f}s  {count / elapsed:>12,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=100_000)
    parser.add_argument("--proofs", type=int, default=2_000)
    args = parser.parse_args()
    n, p = args.leaves, args.proofs
    rng = random.Random(7)

    hashes = [leaf_hash(b"record %d" % i) for i in range(n)]
    timed("leaf_hash", n, lambda: [leaf_hash(b"record %d" % i) for i in range(n)])
    timed("CompactRange.append (no storage)", n, lambda: CompactRange().extend(hashes))
    tree = InMemoryTree()
    timed("InMemoryTree.append (stores nodes)", n, lambda: tree.extend(hashes))
    root = tree.root()

    indices = [rng.randrange(n) for _ in range(p)]
    proofs: list[list[bytes]] = []
    timed(
        "inclusion proof from node store",
        p,
        lambda: proofs.extend(tree.inclusion_proof(i) for i in indices),
    )

    def verify_all() -> None:
        for i, proof in zip(indices, proofs, strict=True):
            verify_inclusion(hashes[i], i, n, proof, root)

    timed("verify_inclusion", p, verify_all)

    olds = [rng.randrange(1, n) for _ in range(p)]
    cproofs: list[list[bytes]] = []
    timed(
        "consistency proof from node store",
        p,
        lambda: cproofs.extend(tree.consistency_proof(m) for m in olds),
    )
    old_roots = [tree.root(m) for m in olds]

    def verify_all_consistency() -> None:
        for m, old_root, proof in zip(olds, old_roots, cproofs, strict=True):
            verify_consistency(m, n, old_root, root, proof)

    timed("verify_consistency", p, verify_all_consistency)


if __name__ == "__main__":
    main()
