"""Throughput of the ledger's GM crypto beside ``openssl speed`` measured in the same run.

Run: ``.venv/bin/python bench/crypto.py`` (about 25 s). Compares

* SM2 sign/s and verify/s (20-byte messages, SM3, default distinguishing ID)
  with ``openssl speed -seconds N sm2`` (which also signs 20 bytes through
  EVP_DigestSign, Z included);
* SM3 MB/s on 16 KiB buffers with ``openssl speed -evp sm3 -bytes 16384``;
* SM4-GCM MB/s (``ledger.sm4.encrypt``, fresh iv per call, 16 KiB buffers) with
  ``openssl speed -evp sm4-gcm``; OpenSSL 3.0's ``speed`` does not know
  ``sm4-gcm``, so then ``sm4-ctr`` is the reference (GCM = CTR + GHASH, so the
  ratio understates ours).

Also SM2 verify/s across all CPUs (threads: the backend releases the GIL),
the ceiling for the log's append rate. MB = 10^6 bytes, like ``openssl speed``.
The last lines are ``figure <name> <value> <unit>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import sm4
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

SECONDS = 2
BLOCK = 16384
MESSAGE = b"shancheng bench 20by"  # 20 bytes, as openssl speed signs


def _rate(operation: Callable[[], object], seconds: float = SECONDS) -> float:
    """Calls per second of ``operation`` over about ``seconds``."""
    operation()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        operation()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _threaded_rate(operation: Callable[[], object], threads: int) -> float:
    counts = [0] * threads
    stop = threading.Event()

    def worker(slot: int) -> None:
        while not stop.is_set():
            operation()
            counts[slot] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def _openssl(*args: str) -> str | None:
    exe = shutil.which("openssl")
    if exe is None:
        return None
    result = subprocess.run(
        [exe, "speed", "-mr", "-seconds", str(SECONDS), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return result.stdout if result.returncode == 0 else None


def _openssl_sm2() -> tuple[float, float] | None:
    out = _openssl("sm2")
    for line in (out or "").splitlines():
        # +F7:<index>:<bits>:<curve>:<sign/s>:<verify/s>
        if line.startswith("+F7:"):
            fields = line.split(":")
            return float(fields[4]), float(fields[5])
    return None


def _openssl_bytes_per_s(algorithm: str) -> float | None:
    out = _openssl("-bytes", str(BLOCK), "-evp", algorithm)
    for line in (out or "").splitlines():
        # +F:<index>:<name>:<bytes/s for each size>
        if line.startswith("+F:"):
            return float(line.split(":")[3])
    return None


def _ratio(ours: float, theirs: float | None) -> float | None:
    return None if not theirs else ours / theirs


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    started = time.perf_counter()
    key = SM2PrivateKey.generate()
    public = key.public_key()
    signature = key.sign(MESSAGE)
    block = os.urandom(BLOCK)
    sm4_key = sm4.generate_key()
    cpus = os.cpu_count() or 1

    ours_sign = _rate(lambda: key.sign(MESSAGE))
    ours_verify = _rate(lambda: public.verify(signature, MESSAGE))
    ours_verify_mt = _threaded_rate(lambda: public.verify(signature, MESSAGE), cpus)
    ours_sm3 = _rate(lambda: sm3(block)) * BLOCK / 1e6
    ours_sm4 = _rate(lambda: sm4.encrypt(sm4_key, block)) * BLOCK / 1e6

    ref_sm2 = _openssl_sm2()
    ref_sign, ref_verify = ref_sm2 if ref_sm2 else (None, None)
    ref_sm3_bps = _openssl_bytes_per_s("sm3")
    ref_sm3 = ref_sm3_bps / 1e6 if ref_sm3_bps else None
    sm4_reference = "sm4-gcm"
    ref_sm4_bps = _openssl_bytes_per_s("sm4-gcm")
    if ref_sm4_bps is None:
        sm4_reference = "sm4-ctr"
        ref_sm4_bps = _openssl_bytes_per_s("sm4-ctr")
    ref_sm4 = ref_sm4_bps / 1e6 if ref_sm4_bps else None

    version = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    rows = [
        ("SM2 sign", "ops/s", ours_sign, ref_sign, "openssl speed sm2"),
        ("SM2 verify", "ops/s", ours_verify, ref_verify, "openssl speed sm2"),
        ("SM3 (16 KiB)", "MB/s", ours_sm3, ref_sm3, "openssl speed -evp sm3"),
        ("SM4-GCM (16 KiB)", "MB/s", ours_sm4, ref_sm4, f"openssl speed -evp {sm4_reference}"),
    ]
    print(f"reference: {version or 'openssl not found'}; {SECONDS} s per measurement")
    print(f"{'':18} {'ours':>12} {'openssl':>12} {'ratio':>7}  reference")
    for name, unit, ours, theirs, reference in rows:
        ratio = _ratio(ours, theirs)
        print(
            f"{name:18} {_fmt(ours, 1):>12} {_fmt(theirs, 1):>12} {_fmt(ratio, 2):>7}"
            f"  {unit}, {reference}"
        )
    print(f"SM2 verify on {cpus} threads: {ours_verify_mt:,.0f} ops/s")
    print(f"total time {time.perf_counter() - started:.1f} s")

    figures: list[tuple[str, float | None, str, int]] = [
        ("sm2_sign_per_s", ours_sign, "ops/s", 0),
        ("sm2_sign_ratio_vs_openssl", _ratio(ours_sign, ref_sign), "ratio", 2),
        ("sm2_verify_per_s", ours_verify, "ops/s", 0),
        ("sm2_verify_ratio_vs_openssl", _ratio(ours_verify, ref_verify), "ratio", 2),
        (f"sm2_verify_per_s_{cpus}_threads", ours_verify_mt, "ops/s", 0),
        ("sm3_mb_per_s", ours_sm3, "MB/s", 1),
        ("sm3_ratio_vs_openssl", _ratio(ours_sm3, ref_sm3), "ratio", 2),
        ("sm4_gcm_mb_per_s", ours_sm4, "MB/s", 1),
        (
            f"sm4_gcm_ratio_vs_openssl_{sm4_reference.replace('-', '_')}",
            _ratio(ours_sm4, ref_sm4),
            "ratio",
            2,
        ),
    ]
    for name, value, unit, digits in figures:
        if value is not None:
            print(f"figure {name} {value:.{digits}f} {unit}")


if __name__ == "__main__":
    main()
