"""The feed watcher: one thread per API process that notices the feed growing.

Every ``interval`` seconds it records newly final anchors
(:func:`exchange.events.anchors.record_final_anchors`) and reads the feed's
head (last log index, largest anchor event). Open SSE streams and the webhook
worker compare that in-memory head with where they are, so an idle stream costs
no query; only the watcher polls the database, whichever process appended.
"""

from __future__ import annotations

import threading

from exchange.events.anchors import record_final_anchors
from exchange.events.feed import feed_head
from exchange.log.sequencer import SessionFactory
from exchange.periodic import PeriodicThread

__all__ = ["FeedWatcher"]


class FeedWatcher(PeriodicThread):
    name = "event-feed"

    def __init__(self, session_factory: SessionFactory, interval: float) -> None:
        super().__init__(interval)
        self._session_factory = session_factory
        self._lock = threading.Lock()
        self._head: tuple[int, int] | None = None

    @property
    def head(self) -> tuple[int, int] | None:
        """(last log index, largest anchor event tree size) at the last pass
        (``None`` before the first)."""
        with self._lock:
            return self._head

    def tick(self) -> None:
        record_final_anchors(self._session_factory)
        with self._session_factory() as session:
            head = feed_head(session)
        with self._lock:
            self._head = head
