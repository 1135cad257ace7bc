"""Helpers shared by the SDK marketplace tests (no tests of its own): the exchange's
test helpers (``running_exchange``, ``listing_content``) made importable from here,
and a CSV dataset spanning several ciphertext chunks."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

# The exchange's test helpers live beside the exchange tests; pytest puts that
# directory on sys.path only when it collects there.
_EXCHANGE_TESTS = str(Path(__file__).resolve().parents[1] / "exchange")
if _EXCHANGE_TESTS not in sys.path:
    sys.path.append(_EXCHANGE_TESTS)

from test_auth_support import listing_content, running_exchange  # noqa: E402
from test_raw_append_support import enrol  # noqa: E402

__all__ = ["enrol", "listing_content", "running_exchange", "write_dataset"]


def write_dataset(path: Path, rows: int = 8000) -> Path:
    """A CSV of ``rows`` rows (8000: about 170 KB, several 64 KiB ciphertext chunks)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stop", "hour", "boardings"])
        for n in range(rows):
            writer.writerow([f"解放碑-{n % 97}", n % 24, (n * 7919) % 5000])
    return path
