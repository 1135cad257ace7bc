"""The provider agent: slice-and-encrypt throughput beside its cryptographic ceiling, and
how soon a paid order is delivered.

Run: ``.venv/bin/python bench/provider_agent.py`` (about 4 minutes for the default 1 GB CSV;
``--size-mb 64 --orders 10`` for a quick look).

**Throughput.** A CSV of ``--size-mb`` megabytes is written
once and described once (SM3, row root and row index, as the agent does at
start-up; not timed). Then, alternating for ``--rounds`` rounds:

* **agent**: :meth:`agent.deliver.Deliverer.seal` of a quantity order for rows
  ``[1000, n - 1000)`` — cut the slice from the row index, encrypt it with a fresh
  SM4 key into the agent's state directory while hashing plaintext and
  ciphertext, wrap the key to the buyer: everything the agent does for an order
  before uploading;
* **ceiling**: the cryptography alone on the same number of bytes, held in
  memory: SM3 of the plaintext, the SM4-GCM chunked stream
  (:func:`ledger.sm4.encrypt_stream`) and SM3 of the ciphertext — the three
  passes a deliverable needs (its record carries both digests), without any
  file I/O or cutting.

The figures are medians over the rounds. RSS of this process is sampled every
10 ms during the agent's runs; its growth over the start of the run must stay
below 64 MB (the stream holds one chunk at a time).

**Latency.** A real exchange (uvicorn on 127.0.0.1, SQLite, in this process) and the
provider agent as its own process (``shancheng provider agent``, listening to the
event feed); a listing in provider custody of a 10,000-row CSV sold whole. A buyer
places ``--orders`` orders one after another, each once the previous one is
delivered; an order's latency is its ``delivered_at - created_at`` (the exchange's
clock: from the committed ``order.placed`` to the committed provider-signed
``delivery.issued``, i.e. the deliverable is ready to download).

The last lines are ``figure <name> <value> <unit>``: ``agent_slice_vs_ceiling``
(ceiling time / agent time; the goal is ≥ 0.8), ``agent_slice_mb_per_s``,
``agent_rss_growth_mb`` (goal < 64), ``delivery_latency_p50_ms`` (goal ≤ 1000) and
``delivery_latency_p90_ms``.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.deliver import Dataset, Deliverer
from agent.state import AgentState
from clients.datasets import describe_file
from clients.sdk import ExchangeClient, Order
from exchange.app import create_app
from exchange.local_exchange import serve_in_thread
from exchange.settings import Settings
from ledger import sm4
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import SM3Hasher

REPO = Path(__file__).resolve().parent.parent
DECLARATIONS = {
    "classification": "一般",
    "personal_information": False,
    "source_legality": "Measured by the provider's own stations.",
    "permitted_purposes": ["research"],
}

_LINE = "{i},station-{s:03d},district-{d:02d},2026-01-01T{h:02d}:00:00,{t:.2f},{p:.1f}\n"
_MEMORY_CHUNK = 1 << 20


def write_csv(path: Path, size: int) -> None:
    """A weather-shaped CSV of about ``size`` bytes."""
    written = 0
    with open(path, "w", encoding="ascii", newline="") as out:
        out.write("id,station,district,observed_at,temperature_c,pressure_hpa\n")
        i = 0
        while written < size:
            lines = [
                _LINE.format(
                    i=j,
                    s=j % 997,
                    d=j % 15,
                    h=j % 24,
                    t=(j * 37 % 5500) / 100 - 10,
                    p=900 + j % 150,
                )
                for j in range(i, i + 10_000)
            ]
            block = "".join(lines)
            out.write(block)
            written += len(block)
            i += 10_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """The peak RSS of this process while the block runs, sampled every 10 ms."""

    def __init__(self) -> None:
        self.start = rss_bytes()
        self.peak = self.start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def ceiling_once(plaintext: bytes) -> float:
    """SM3(plaintext) + SM4-GCM stream + SM3(ciphertext), in memory; seconds."""
    started = time.perf_counter()
    plain = SM3Hasher()
    view = memoryview(plaintext)
    for at in range(0, len(view), _MEMORY_CHUNK):
        plain.update(view[at : at + _MEMORY_CHUNK])
    sink = io.BytesIO()
    sm4.encrypt_stream(sm4.generate_key(), io.BytesIO(plaintext), sink, b"aad")
    cipher = SM3Hasher()
    sealed = sink.getbuffer()
    for at in range(0, len(sealed), _MEMORY_CHUNK):
        cipher.update(sealed[at : at + _MEMORY_CHUNK])
    del sealed
    plain.digest(), cipher.digest()
    return time.perf_counter() - started


def make_order(dataset: Dataset, buyer: str, offset: int, count: int, n: int) -> Order:
    return Order(
        id=f"00000000-0000-4000-8000-{n:012d}",
        buyer=buyer,
        listing_id=dataset.listing_id,
        version=dataset.version,
        content_digest=dataset.content_digest,
        quote_id=f"q{n}",
        terms={"rows": count, "row_offset": offset},
        amount=0,
        escrow=0,
        state="placed",
        created_at=0,
        updated_at=0,
        acceptance_deadline=None,
        access_expires_at=None,
        placed_leaf_hash="0" * 64,
        rows=count,
        row_offset=offset,
        custody="provider",
    )


def throughput(size_mb: int, rounds: int) -> tuple[float, float, float]:
    """(ceiling / agent time, agent MB/s, RSS growth MB), medians over ``rounds``."""
    with tempfile.TemporaryDirectory(prefix="shancheng-bench-agent-") as scratch:
        root = Path(scratch)
        data = root / "weather.csv"
        print(f"writing a {size_mb} MB CSV ...", flush=True)
        write_csv(data, size_mb << 20)
        index = root / "rows.idx"
        described = describe_file(data, sample_rows=0, row_index=index)
        rows = described.row_count
        assert rows is not None and described.row_root is not None
        dataset = Dataset(
            listing_id="00000000-0000-4000-8000-00000000000a",
            version=1,
            path=data,
            format="csv",
            content_digest=described.sm3,
            row_count=rows,
            row_root=described.row_root,
            row_index=index,
        )
        buyer = SM2PrivateKey.generate()
        state = AgentState(root / "state")
        deliverer = Deliverer(None, state, {dataset.listing_id: dataset}, lambda _line: None)  # type: ignore[arg-type]
        offset, count = 1000, rows - 2000
        print(f"{rows} rows; slicing [{offset}, {offset + count})", flush=True)

        agent_times: list[float] = []
        ceiling_times: list[float] = []
        growth = 0
        slice_bytes = 0
        for n in range(rounds):
            order = make_order(dataset, buyer.public_key().key_id(), offset, count, n)
            with RssSampler() as rss:
                started = time.perf_counter()
                progress = deliverer.seal(order, buyer.public_key())
                agent_times.append(time.perf_counter() - started)
            growth = max(growth, rss.peak - rss.start)
            slice_bytes = progress["delivery"]["plaintext_size"]
            state.sealed_path(order.id).unlink()
            plaintext = os.urandom(slice_bytes)
            ceiling_times.append(ceiling_once(plaintext))
            del plaintext
            print(
                f"round {n + 1}: agent {agent_times[-1]:.2f} s, ceiling {ceiling_times[-1]:.2f} s",
                flush=True,
            )

    agent_s = statistics.median(agent_times)
    ceiling_s = statistics.median(ceiling_times)
    return ceiling_s / agent_s, slice_bytes / agent_s / 1e6, growth / 1e6


def start_agent(root: Path, url: str, key: SM2PrivateKey, listing: str, data: Path) -> Any:
    key_file = root / "provider.pem"
    key_file.write_bytes(key.to_pem())
    command = [sys.executable, "-m", "exchange.cli", "provider", "agent", "--exchange-url", url]
    command += ["--key-file", str(key_file), "--state-dir", str(root / "agent-state")]
    command += ["--dataset", f"{listing}={data}"]
    log = open(root / "agent.log", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def latency(orders: int) -> list[float]:
    """Milliseconds from ``order.placed`` to the provider's ``delivery.issued``, per order."""
    operator, provider_key = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    with tempfile.TemporaryDirectory(prefix="shancheng-bench-latency-") as scratch:
        root = Path(scratch)
        data = root / "readings.csv"
        write_csv(data, 700_000)  # about 10,000 rows
        settings = Settings(
            data_dir=root / "data",
            database_url=f"sqlite:///{root / 'exchange.db'}",
            operator_public_keys=[operator.public_key().to_pem().decode()],
        )
        with serve_in_thread(create_app(settings)) as url:
            op = ExchangeClient(url, key=operator)
            provider = ExchangeClient(url, key=provider_key)
            buyer = ExchangeClient(url, key=SM2PrivateKey.generate())
            provider.register("重庆气象数据", "provider")
            op.approve_participant(provider_key.key_id())
            fields = provider.listing_from_file(
                data,
                custody="provider",
                title="Hourly readings",
                description="",
                category="environment",
                tags=[],
                providers=[{"key_id": provider.key_id, "share_bps": 10_000}],
                update_frequency="once",
                licence="Shancheng standard data licence v1",
                usage_terms="Research only.",
                pricing={"model": "fixed", "price": 100},
                declarations=DECLARATIONS,
            )
            listing = provider.create_listing(fields).id
            provider.submit_listing(listing)
            op.review_listing(listing)
            op.publish_listing(listing)
            buyer.register("买家", "buyer")
            op.deposit(buyer.key_id or "", 100 * orders, "bank transfer")
            agent = start_agent(root, url, provider_key, listing, data)
            try:
                return _timed_orders(buyer, listing, orders, agent)
            finally:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
                for client in (op, provider, buyer):
                    client.close()


def _timed_orders(buyer: ExchangeClient, listing: str, orders: int, agent: Any) -> list[float]:
    times: list[float] = []
    for n in range(orders):
        order = buyer.place_order(buyer.quote(listing))
        deadline = time.monotonic() + 120
        while (current := buyer.order(order.id)).state == "placed":
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the agent did not deliver (see its log)")
            time.sleep(0.05)
        assert current.delivered_at is not None
        times.append(current.delivered_at - current.created_at)
        print(f"order {n + 1}: delivered after {times[-1]} ms", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="CSV size (default 1 GB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=30, help="orders timed for the latency")
    args = parser.parse_args()
    delivered_ms = latency(args.orders)
    ratio, mb_per_s, growth_mb = throughput(args.size_mb, args.rounds)
    ordered = sorted(delivered_ms)
    print(f"figure agent_slice_vs_ceiling {ratio:.3f} ratio")
    print(f"figure agent_slice_mb_per_s {mb_per_s:.1f} MB/s")
    print(f"figure agent_rss_growth_mb {growth_mb:.1f} MB")
    print(f"figure delivery_latency_p50_ms {statistics.median(ordered):.0f} ms")
    print(f"figure delivery_latency_p90_ms {ordered[int(0.9 * (len(ordered) - 1))]:.0f} ms")


if __name__ == "__main__":
    main()
