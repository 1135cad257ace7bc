"""Benchmark of the log service on a temporary SQLite file (WAL).

.venv/bin/python bench/log.py [--records 4000] [--integrate 100000] [--proof-leaves 1000000]

1. Append throughput: records/s through ``append_many`` (parse the signed
   record and key, SM2-verify the actor's signature, canonical bytes + SM3
   leaf hash, next index under the write lock, SM2-sign the promise, insert,
   durable commit with ``synchronous=FULL``), beside the raw SM2 verify rate
   measured in the same run on the same records, at the same thread count.
   The per-record floor is one SM2 verify *plus one SM2 sign* (the promise),
   so at equal parallelism the ratio cannot exceed verify/(verify+sign).
2. Time to integrate 100k leaves (sequencer, default batch of 10,000:
   CompactRange over the stored edge, node rows, signed checkpoints).
3. Inclusion and consistency proof latency at 1M leaves: each proof opens a
   session, validates sizes against the latest checkpoint and reads its
   O(log n) nodes in one query — what a request does minus HTTP.

The last lines are ``figure <name> <value> <unit>``: ``append_per_s`` is
``append_many`` on all threads; ``append_vs_sm2_verify`` divides it by the raw
single-thread verify rate (as ``openssl speed`` would report it), and
``append_vs_sm2_verify_<n>_threads`` by the raw verify rate on as many threads.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert
from sqlmodel import Session

from exchange.log import queries
from exchange.log.models import LogEntry
from exchange.log.sequencer import DEFAULT_MAX_BATCH, integrate_pending
from exchange.log.service import append, append_many, parse_submission
from exchange.log.testing import LogDatabase, isolated_database
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

APPEND_BATCH = 500
SINGLE_APPENDS = 600


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- append


def _make_records(count: int, pool: ThreadPoolExecutor) -> list[dict[str, Any]]:
    actors = [SM2PrivateKey.generate() for _ in range(8)]
    pems = {a.key_id(): a.public_key().to_pem().decode() for a in actors}

    def make(n: int) -> dict[str, Any]:
        actor = actors[n % len(actors)]
        signed = sign_record(
            actor,
            "order.placed",
            {
                "order": f"o-{n:08d}",
                "listing": f"l-{n % 97:04d}",
                "buyer": actor.key_id(),
                "amount_fen": 1999 * (n % 13 + 1),
                "rows": 1000 + n,
            },
        )
        return {"record": signed.to_dict(), "public_key": pems[actor.key_id()]}

    return list(pool.map(make, range(count)))


def _raw_verify_rate(bodies: list[dict[str, Any]], threads: int) -> float:
    """SM2 verifications/s of the records' signatures (bytes and keys prepared)."""
    prepared = []
    for body in bodies:
        signed, key = parse_submission(body["record"], body["public_key"])
        prepared.append((key, signed.signature, signed.record.canonical_bytes()))

    def verify_all(chunk: Sequence[Any]) -> None:
        for key, signature, data in chunk:
            key.verify(signature, data)

    if threads == 1:
        elapsed = _timed(lambda: verify_all(prepared))
    else:
        with ThreadPoolExecutor(threads) as pool:
            chunks = _chunks(prepared, max(1, len(prepared) // (threads * 8)))
            elapsed = _timed(lambda: list(pool.map(verify_all, chunks)))
    return len(prepared) / elapsed


def _append_rate(db: LogDatabase, bodies: list[dict[str, Any]], threads: int) -> float:
    """records/s through append_many in batches (parse, verify, store, sign, commit)."""
    log_key = SM2PrivateKey.generate()
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def run() -> None:
        for chunk in _chunks(bodies, APPEND_BATCH):
            items = [parse_submission(b["record"], b["public_key"]) for b in chunk]
            with Session(db.engine) as session:
                append_many(session, items, log_key, executor=pool)

    try:
        elapsed = _timed(run)
    finally:
        if pool is not None:
            pool.shutdown()
    return len(bodies) / elapsed


def _single_append_rate(db: LogDatabase, bodies: list[dict[str, Any]]) -> float:
    """records/s with one transaction (and one durable commit) per record."""
    log_key = SM2PrivateKey.generate()

    def run() -> None:
        for body in bodies:
            signed, key = parse_submission(body["record"], body["public_key"])
            with Session(db.engine) as session:
                append(session, signed, key, log_key)

    return len(bodies) / _timed(run)


# --------------------------------------------------------------------------- tree


def _insert_synthetic_entries(db: LogDatabase, start: int, count: int) -> None:
    """Accepted entries with random leaf hashes (what the sequencer reads), fast."""
    rng = random.Random(start)
    chunk = 50_000
    for begin in range(start, start + count, chunk):
        rows = [
            {
                "index": i,
                "leaf_hash": rng.randbytes(32),
                "leaf": b"{}",
                "record_type": "bench.synthetic",
                "actor_key_id": "00" * 32,
                "actor_public_key": "",
                "accepted_at": 0,
                "log_key_id": "00" * 32,
                "promise_signature": b"-",
            }
            for i in range(begin, min(begin + chunk, start + count))
        ]
        with Session(db.engine) as session:
            session.execute(insert(LogEntry), rows)
            session.commit()


def _latencies_ms(fn: Callable[[int], object], rounds: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out = []
    for _ in range(rounds):
        arg = rng.randrange(1 << 62)
        start = time.perf_counter()
        fn(arg)
        out.append((time.perf_counter() - start) * 1000)
    return out


def _summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"mean {statistics.fmean(ordered):.3f} ms, median {statistics.median(ordered):.3f} ms, "
        f"p99 {p99:.3f} ms over {len(ordered)}"
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records for append rates")
    parser.add_argument("--integrate", type=int, default=100_000, help="leaves to integrate")
    parser.add_argument("--proof-leaves", type=int, default=1_000_000, help="tree for proofs")
    parser.add_argument("--proofs", type=int, default=2000, help="proofs of each kind")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.proof_leaves < args.integrate:
        parser.error("--proof-leaves must be at least --integrate")
    threads = max(1, args.threads)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="shancheng-bench-log-") as tmp:
        root = Path(tmp)
        with ThreadPoolExecutor(threads) as pool:
            bodies = _make_records(args.records, pool)
        record_bytes = statistics.fmean(
            len(SignedRecord.from_dict(b["record"]).leaf_bytes()) for b in bodies[:100]
        )
        print(f"{args.records} signed records of ~{record_bytes:.0f} bytes, {threads} threads")

        verify_1 = _raw_verify_rate(bodies, 1)
        verify_n = _raw_verify_rate(bodies, threads)
        rates: dict[str, float] = {}
        for name, thread_count in [("n", threads), ("1", 1)]:
            (root / name).mkdir()
            with isolated_database(None, root / name) as db:
                rates[name] = _append_rate(db, bodies, thread_count)
        (root / "single").mkdir()
        with isolated_database(None, root / "single") as db:
            single = _single_append_rate(db, bodies[:SINGLE_APPENDS])

        print(f"raw SM2 verify, 1 thread               {verify_1:>9,.0f} /s")
        print(f"raw SM2 verify, {threads} threads              {verify_n:>9,.0f} /s")
        print(
            f"append_many (batch {APPEND_BATCH}), 1 thread     {rates['1']:>9,.0f} records/s"
            f"   = {rates['1'] / verify_1:.2f} x raw verify on 1 thread"
        )
        print(
            f"append_many (batch {APPEND_BATCH}), {threads} threads    "
            f"{rates['n']:>9,.0f} records/s"
            f"   = {rates['n'] / verify_n:.2f} x raw verify on {threads} threads"
            f", {rates['n'] / verify_1:.2f} x on 1 thread"
        )
        print(
            f"append, one commit per record, 1 thread {single:>8,.0f} records/s"
            f"   = {single / verify_1:.2f} x raw verify on 1 thread"
        )

        # -- integrate 100k
        (root / "tree").mkdir()
        with isolated_database(None, root / "tree") as db:
            log_key = SM2PrivateKey.generate()
            factory = db.session_factory()
            _insert_synthetic_entries(db, 0, args.integrate)
            integrate_s = _timed(lambda: integrate_pending(factory, log_key, DEFAULT_MAX_BATCH))
            print(
                f"integrate {args.integrate:,} leaves (batches of {DEFAULT_MAX_BATCH:,}): "
                f"{integrate_s:.2f} s = {args.integrate / integrate_s:,.0f} leaves/s"
            )

            # -- grow to the proof tree with the same sequencer, then measure proofs
            more = args.proof_leaves - args.integrate
            grow_s = _timed(lambda: _insert_synthetic_entries(db, args.integrate, more))
            grow_s += _timed(lambda: integrate_pending(factory, log_key, 100_000))
            n = args.proof_leaves
            with factory() as session:
                checkpoint = queries.require_latest_checkpoint(session)
                first_root = queries.checkpoint_at(session, args.integrate).root
            assert checkpoint.tree_size == n
            print(f"grew the tree to {n:,} leaves in {grow_s:.1f} s (setup)")

            def inclusion(seed: int) -> None:
                with factory() as session:
                    queries.inclusion_proof(session, n, index=seed % n)

            def consistency(seed: int) -> None:
                with factory() as session:
                    queries.consistency_proof(session, 1 + seed % (n - 1), n)

            with factory() as session:  # the proofs are right, not just fast
                proof = queries.inclusion_proof(session, n, index=n // 3)
                verify_inclusion(proof.leaf_hash, n // 3, n, proof.hashes, checkpoint.root)
                cproof = queries.consistency_proof(session, args.integrate, n)
                verify_consistency(args.integrate, n, first_root, checkpoint.root, cproof.hashes)
            inclusion_ms = _latencies_ms(inclusion, args.proofs, 1)
            consistency_ms = _latencies_ms(consistency, args.proofs, 2)
            print(f"inclusion proof at {n:,} leaves:   {_summary(inclusion_ms)}")
            print(f"consistency proof at {n:,} leaves: {_summary(consistency_ms)}")

    print(f"total time {time.perf_counter() - started:.1f} s")
    figures = [
        ("append_per_s", f"{rates['n']:.0f}", "records/s"),
        ("append_vs_sm2_verify", f"{rates['n'] / verify_1:.2f}", "ratio"),
        (f"append_vs_sm2_verify_{threads}_threads", f"{rates['n'] / verify_n:.2f}", "ratio"),
        ("integrate_100k_s", f"{integrate_s:.2f}", "s"),
        ("inclusion_proof_1m_ms", f"{statistics.fmean(inclusion_ms):.3f}", "ms"),
        ("consistency_proof_1m_ms", f"{statistics.fmean(consistency_ms):.3f}", "ms"),
    ]
    for name, value, unit in figures:
        print(f"figure {name} {value} {unit}")


if __name__ == "__main__":
    main()
