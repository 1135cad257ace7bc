"""Helper for memory tests (no tests of its own): the growth of this process's
resident set DURING an operation, sampled from ``/proc/self/statm``.

The process high-water mark (``ru_maxrss``) cannot serve: it never goes down, so
an earlier test that peaked higher hides any growth of the one measured. Here a
thread samples the current RSS every few milliseconds while the operation runs;
``growth`` is the highest sample minus the RSS just before, which a buffer of the
whole data (held for the milliseconds it takes to fill and use it) shows."""

from __future__ import annotations

import os
import threading
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


class RssGrowth:
    """``with RssGrowth() as rss: ...`` then ``rss.growth`` (bytes): the highest
    resident set sampled during the block minus the one before it."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.before = 0
        self.peak = 0
        self.samples = 0

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.before)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> RssGrowth:
        self.before = self.peak = resident_bytes()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())
