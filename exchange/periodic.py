"""A background thread that runs one pass of work every ``interval`` seconds."""

from __future__ import annotations

import logging
import threading

__all__ = ["PeriodicThread"]

logger = logging.getLogger(__name__)


class PeriodicThread:
    """Calls :meth:`tick` now and then every ``interval`` seconds until stopped.

    A failing pass (database down, lock timeout) is logged and retried on the
    next tick: subclasses write nothing half, so nothing is lost. ``name``
    names the thread and the log lines."""

    name = "periodic"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} thread is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass (if any) finishes."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("%s pass failed; retrying in %.1f s", self.name, self.interval)
            self._stop.wait(self.interval)
