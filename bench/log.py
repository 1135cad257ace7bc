"""Benchmark of the log service on a temporary SQLite file (WAL).

.venv/bin/python bench/log.py [--records 4000] [--integrate 100000] [--proof-leaves 1000000]

1. Append throughput through the :class:`~exchange.log.appender.Appender`, as
   the HTTP API appends: ``--clients`` clients each send one record and wait
   for its promise before sending the next; ``--workers`` request threads
   take a record, parse it (signed record and key), SM2-verify the actor's
   signature, compute its canonical bytes and SM3 leaf hash and submit it to
   the appender (inside ``Appender.reserve()``, which admits as many threads
   at a time as there are CPUs); like the async request handlers they do not
   block on the commit. The appender's committer stores what is queued in one
   transaction (duplicate check, next index under the write lock, ONE SM2
   signature over the promise batch, inserts) with a durable commit
   (``synchronous=FULL``), then resolves the clients' waits. Beside it,
   the raw SM2 verify rate on the same records, on one thread and on as many
   threads as the run uses (``--threads``, default the CPU count), measured
   just before and just after each appender run; ``--rounds`` such rounds,
   the median (by ratio) reported. Since a record costs one SM2 verify plus a
   share of one signature per transaction, the verify rate is the ceiling.
   For context: ``append_many`` in batches of 500 (the synchronous core) and
   ``append`` with one transaction per record.
2. Time to integrate 100k leaves (sequencer, default batch of 10,000:
   CompactRange over the stored edge, node rows, signed checkpoints).
3. Inclusion and consistency proof latency at 1M leaves: each proof opens a
   session, validates sizes against the latest checkpoint and reads its
   O(log n) nodes in one query — what a request does minus HTTP.

The last lines are ``figure <name> <value> <unit>``: ``append_per_s`` is the
appender's rate; ``append_vs_sm2_verify`` divides it by the raw single-thread
verify rate (as ``openssl speed`` would report it), and
``append_vs_sm2_verify_<n>_threads`` by the raw verify rate on ``n`` threads.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert
from sqlmodel import Session

from exchange.log import queries
from exchange.log.appender import Appender, AppenderStats
from exchange.log.models import MAX_PROMISE_BATCH, LogEntry, PromiseBatchRow
from exchange.log.sequencer import DEFAULT_MAX_BATCH, integrate_pending
from exchange.log.service import (
    Accepted,
    append,
    append_many,
    check_submission,
    parse_submission,
)
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


def _appender_rate(
    db: LogDatabase, bodies: list[dict[str, Any]], clients: int, workers: int
) -> tuple[float, AppenderStats]:
    """records/s through the Appender, as the HTTP API appends (see the docstring).

    ``clients`` concurrent clients each send one record and wait for its promise
    before sending the next; ``workers`` threads (the server's threadpool) parse,
    verify and submit them inside ``Appender.reserve()`` (which admits as many
    at a time as there are CPUs), and, like the async request handlers, do not
    block on the commit: the promise resolves the client's wait."""
    log_key = SM2PrivateKey.generate()
    appender = Appender(db.session_factory(), log_key)
    appender.start()
    waiting = threading.BoundedSemaphore(clients)  # a free client sends its next record
    queue = iter(bodies)
    take = threading.Lock()
    futures: list[Future[list[Accepted]]] = []

    def worker() -> None:
        while True:
            waiting.acquire()
            with take:
                body = next(queue, None)
            if body is None:
                waiting.release()
                return
            with appender.reserve() as reservation:
                signed, key = parse_submission(body["record"], body["public_key"])
                future = reservation.submit([check_submission(signed, key)])
            future.add_done_callback(lambda _: waiting.release())
            futures.append(future)

    def run() -> None:
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for future in futures:
            future.result()

    try:
        elapsed = _timed(run)
    finally:
        appender.stop()
    assert appender.stats.records == len(bodies)
    return len(bodies) / elapsed, appender.stats


@dataclass(frozen=True)
class Round:
    """One appender measurement and the raw verify rates around it."""

    verify_1: float
    verify_n: float
    appended: float
    stats: AppenderStats

    @property
    def ratio_1(self) -> float:
        return self.appended / self.verify_1

    @property
    def ratio_n(self) -> float:
        return self.appended / self.verify_n


def _append_round(
    db: LogDatabase, bodies: list[dict[str, Any]], threads: int, clients: int, workers: int
) -> Round:
    """The appender's rate, and the raw verify rates (1 and ``threads`` threads)
    averaged over a measurement just before and one just after it, so that the
    ratio compares rates taken under the same conditions (this machine may be
    shared: a busy neighbour depresses all three, not one)."""
    before_1, before_n = _raw_verify_rate(bodies, 1), _raw_verify_rate(bodies, threads)
    appended, stats = _appender_rate(db, bodies, clients, workers)
    after_1, after_n = _raw_verify_rate(bodies, 1), _raw_verify_rate(bodies, threads)
    return Round((before_1 + after_1) / 2, (before_n + after_n) / 2, appended, stats)


def _append_many_rate(db: LogDatabase, bodies: list[dict[str, Any]], threads: int) -> float:
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
    """Accepted entries with random leaf hashes (what the sequencer reads), fast,
    with synthetic promise batches of MAX_PROMISE_BATCH (the entries reference them)."""
    rng = random.Random(start)
    chunk = 50 * MAX_PROMISE_BATCH
    for begin in range(start, start + count, chunk):
        end = min(begin + chunk, start + count)
        batches = [
            {
                "first_index": first,
                "size": min(MAX_PROMISE_BATCH, end - first),
                "batch_root": rng.randbytes(32),
                "timestamp": 0,
                "log_key_id": "00" * 32,
                "signature": b"synthetic",
            }
            for first in range(begin, end, MAX_PROMISE_BATCH)
        ]
        rows = [
            {
                "index": i,
                "leaf_hash": rng.randbytes(32),
                "leaf": b"{}",
                "record_type": "bench.synthetic",
                "actor_key_id": "00" * 32,
                "actor_public_key": "",
                "batch_first_index": begin + (i - begin) // MAX_PROMISE_BATCH * MAX_PROMISE_BATCH,
            }
            for i in range(begin, end)
        ]
        with Session(db.engine) as session:
            session.execute(insert(PromiseBatchRow), batches)
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
    parser.add_argument("--clients", type=int, default=64, help="concurrent appending clients")
    parser.add_argument(
        "--rounds", type=int, default=3, help="appender measurements (the median is reported)"
    )
    parser.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1), help="request threads"
    )
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

        rounds: list[Round] = []
        for number in range(args.rounds):
            (root / f"appender-{number}").mkdir()
            with isolated_database(None, root / f"appender-{number}") as db:
                rounds.append(_append_round(db, bodies, threads, args.clients, args.workers))
        (root / "many").mkdir()
        with isolated_database(None, root / "many") as db:
            many = _append_many_rate(db, bodies, threads)
        (root / "single").mkdir()
        with isolated_database(None, root / "single") as db:
            single = _single_append_rate(db, bodies[:SINGLE_APPENDS])

        print(
            f"appender ({args.clients} clients, {args.workers} workers) beside raw SM2 verify "
            f"measured just before and after it, {args.rounds} rounds:"
        )
        for number, r in enumerate(rounds, 1):
            print(
                f"  round {number}: verify {r.verify_1:,.0f}/s on 1 thread, {r.verify_n:,.0f}/s on "
                f"{threads}; appender {r.appended:,.0f} records/s = {r.ratio_1:.2f} x 1 thread, "
                f"{r.ratio_n:.2f} x {threads}; {r.stats.transactions} transactions, "
                f"{r.stats.records / r.stats.transactions:.1f} records each on average "
                f"({r.stats.largest} at most)"
            )
        median = sorted(rounds, key=lambda r: r.ratio_1)[len(rounds) // 2]
        verify_1, verify_n, appended = median.verify_1, median.verify_n, median.appended
        print(f"raw SM2 verify, 1 thread                 {verify_1:>9,.0f} /s   (median round)")
        print(f"raw SM2 verify, {threads} threads                {verify_n:>9,.0f} /s")
        if verify_n < 1.5 * verify_1 and threads > 1:
            print(
                f"  (the {threads}-thread verify rate is only {verify_n / verify_1:.2f} x the "
                "1-thread rate: other processes are using the CPUs; figures are depressed)"
            )
        print(
            f"appender                                {appended:>9,.0f} records/s"
            f"   = {median.ratio_1:.2f} x raw verify on 1 thread"
            f", {median.ratio_n:.2f} x on {threads} threads"
        )
        print(
            f"append_many (batch {APPEND_BATCH}), {threads} threads      {many:>9,.0f} records/s"
            f"   = {many / verify_1:.2f} x raw verify on 1 thread"
        )
        print(
            f"append, one commit per record, 1 thread {single:>9,.0f} records/s"
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
        ("append_per_s", f"{appended:.0f}", "records/s"),
        ("append_vs_sm2_verify", f"{median.ratio_1:.2f}", "ratio"),
        (f"append_vs_sm2_verify_{threads}_threads", f"{median.ratio_n:.2f}", "ratio"),
        ("integrate_100k_s", f"{integrate_s:.2f}", "s"),
        ("inclusion_proof_1m_ms", f"{statistics.fmean(inclusion_ms):.3f}", "ms"),
        ("consistency_proof_1m_ms", f"{statistics.fmean(consistency_ms):.3f}", "ms"),
    ]
    for name, value, unit in figures:
        print(f"figure {name} {value} {unit}")


if __name__ == "__main__":
    main()
