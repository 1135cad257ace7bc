"""Throughput of the encrypted content store beside raw SM4-GCM and SM3 in the same run.

Run: ``.venv/bin/python bench/content.py [--mb 256]`` (about 15 s at 256 MB).
Measures, on data generated on the fly (never whole in memory):

* raw SM3 MB/s (``ledger.sm3``, 64 KiB blocks) and raw SM4-GCM MB/s
  (``ledger.sm4.encrypt``, 64 KiB blocks, the store's chunk size);
* the per-byte ceiling of an ingest, which does both on every byte:
  ``1 / (1/sm3 + 1/sm4)``;
* ``ContentStore.ingest``: SM3 + chunked SM4-GCM + writes to a temporary
  directory + fsync + atomic rename, into a temporary directory on the
  disk of ``--dir`` (default: the system temp dir);
* ``decrypt_file``: chunked decryption + SM3 of the plaintext + writing
  the plaintext file + fsync + rename (the buyer's side);
* ``read_range`` over the whole ciphertext (the server's side of a download).

MB = 10^6 bytes. The last lines are ``figure <name> <value> <unit>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exchange.content import ContentStore, decrypt_file
from ledger import sm4
from ledger.sm3 import SM3Hasher, sm3

BLOCK = 1 << 16
SOURCE_BLOCK = 1 << 20


def _source(total: int, base: bytes) -> Iterator[bytes]:
    for i in range(total // SOURCE_BLOCK):
        yield i.to_bytes(8, "big") + base[8:]


def _block_rate(operation: Callable[[bytes], object], seconds: float = 2.0) -> float:
    """MB/s of ``operation`` on 64 KiB blocks for about ``seconds``."""
    block = os.urandom(BLOCK)
    operation(block)
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        operation(block)
        count += 1
    return count * BLOCK / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="content size in MiB")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temp dir)")
    args = parser.parse_args()
    total = args.mb * SOURCE_BLOCK
    started = time.perf_counter()

    key = sm4.generate_key()
    raw_sm3 = _block_rate(sm3)
    raw_sm4 = _block_rate(lambda block: sm4.encrypt(key, block))
    ceiling = 1 / (1 / raw_sm3 + 1 / raw_sm4)

    base = os.urandom(SOURCE_BLOCK)
    hasher = SM3Hasher()
    for block in _source(total, base):
        hasher.update(block)
    digest = hasher.hexdigest()

    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        store = ContentStore(Path(directory) / "content", sm4.generate_key())
        t0 = time.perf_counter()
        content = store.ingest("bench", 1, _source(total, base), digest)
        ingest = total / (time.perf_counter() - t0) / 1e6

        delivery = store.open_for_delivery("bench", 1)
        t0 = time.perf_counter()
        served = sum(len(block) for block in delivery.read_range())
        serve = served / (time.perf_counter() - t0) / 1e6

        content_key = store.content_key(content)
        t0 = time.perf_counter()
        decrypt_file(
            content_key,
            delivery.path,
            Path(directory) / "plain.bin",
            listing_id="bench",
            version=1,
            expected_sm3_hex=digest,
        )
        decrypt = total / (time.perf_counter() - t0) / 1e6

    print(f"{args.mb} MiB content, {BLOCK // 1024} KiB chunks; MB = 10^6 bytes")
    rows = [
        ("raw SM3", raw_sm3),
        ("raw SM4-GCM", raw_sm4),
        ("SM3+SM4 ceiling", ceiling),
        ("ingest", ingest),
        ("decrypt_file", decrypt),
        ("read_range", serve),
    ]
    for name, value in rows:
        print(f"{name:16} {value:10,.1f} MB/s")
    print(f"ingest / ceiling  {ingest / ceiling:.2f}; decrypt / ceiling {decrypt / ceiling:.2f}")
    print(f"total time {time.perf_counter() - started:.1f} s")
    for name, value, unit, digits in [
        ("content_sm3_mb_per_s", raw_sm3, "MB/s", 1),
        ("content_sm4_gcm_mb_per_s", raw_sm4, "MB/s", 1),
        ("content_ingest_mb_per_s", ingest, "MB/s", 1),
        ("content_ingest_vs_ceiling", ingest / ceiling, "ratio", 2),
        ("content_decrypt_mb_per_s", decrypt, "MB/s", 1),
        ("content_decrypt_vs_ceiling", decrypt / ceiling, "ratio", 2),
        ("content_read_range_mb_per_s", serve, "MB/s", 1),
    ]:
        print(f"figure {name} {value:.{digits}f} {unit}")


if __name__ == "__main__":
    main()
