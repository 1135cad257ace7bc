"""Ingest and decryption stream in constant memory: 200 MB through a few MB."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_memory_support import RssGrowth

from exchange.content import ContentStore, decrypt_file
from ledger import sm4
from ledger.sm3 import SM3Hasher

TOTAL = 200 * 1024 * 1024
BLOCK = 1024 * 1024
PEAK_LIMIT = 8 * 1024 * 1024  # traced Python allocations, whatever the size
RSS_GROWTH_LIMIT = 64 * 1024 * 1024  # sampled during the run (test_memory_support)

pytestmark = pytest.mark.slow


def test_200_mb_in_constant_memory(tmp_path: Path) -> None:
    hasher = SM3Hasher()
    base = os.urandom(BLOCK)

    def source() -> Iterator[bytes]:
        """200 MB made on the fly, never held: a random block with a counter stamped in."""
        for i in range(TOTAL // BLOCK):
            yield i.to_bytes(8, "big") + base[8:]

    for block in source():
        hasher.update(block)
    digest = hasher.hexdigest()
    store = ContentStore(tmp_path / "content", sm4.generate_key())

    tracemalloc.start()
    try:
        with RssGrowth() as rss:
            content = store.ingest("lst_big", 1, source(), digest)
            _, ingest_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            delivery = store.open_for_delivery("lst_big", 1)
            key = store.content_key(content)
            out = tmp_path / "plain.bin"
            assert (
                decrypt_file(
                    key,
                    delivery.path,
                    out,
                    listing_id="lst_big",
                    version=1,
                    expected_sm3_hex=digest,
                )
                == digest
            )
            _, decrypt_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert content.plaintext_size == TOTAL
    assert out.stat().st_size == TOTAL
    assert ingest_peak < PEAK_LIMIT, f"ingest peaked at {ingest_peak / 1e6:.1f} MB"
    assert decrypt_peak < PEAK_LIMIT, f"decryption peaked at {decrypt_peak / 1e6:.1f} MB"
    assert rss.samples > 1
    assert rss.growth < RSS_GROWTH_LIMIT, f"RSS grew by {rss.growth / 2**20:.1f} MiB"
