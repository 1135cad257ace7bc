"""A background thread that runs one pass of work every ``interval`` seconds, and the
base of the exchange's own periodic decisions (auto-accept, overdue refunds,
unanswered computations)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlmodel import Session

from exchange.errors import ExchangeError
from ledger.sm2 import SM2PrivateKey

__all__ = ["DecisionPass", "PeriodicThread", "each_in_its_own_transaction"]

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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DecisionPass(PeriodicThread):
    """Every ``interval`` seconds, :meth:`decide` in a fresh session: one pass of a
    decision the exchange makes itself (signed by its log key), each item in its own
    transaction, so a failed pass leaves nothing half done."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        log_key: SM2PrivateKey,
        *,
        interval: float,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        super().__init__(interval)
        self._session_factory = session_factory
        self.log_key = log_key
        self._clock = clock

    def decide(self, session: Session, now_ms: int) -> int:
        """Make the decisions due at ``now_ms``; how many were made."""
        raise NotImplementedError

    def run_once(self) -> int:
        with self._session_factory() as session:
            return self.decide(session, self._clock())

    def tick(self) -> None:
        self.run_once()


def each_in_its_own_transaction(
    session: Session, ids: Iterable[str], act: Callable[[str], object], what: str
) -> int:
    """``act(id)`` for each id (each commits its own transaction); one that is refused
    (changed meanwhile, done by another process) is rolled back, logged and skipped.
    Returns how many succeeded."""
    done = 0
    for item in ids:
        try:
            act(item)
        except ExchangeError as exc:
            session.rollback()
            logger.info("%s %s skipped: %s %s", what, item, exc.code, exc.message)
            continue
        done += 1
    return done
