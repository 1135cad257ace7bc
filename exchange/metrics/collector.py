"""The database's figures as Prometheus metric families, read at every scrape."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from exchange.metrics.figures import current_figures

__all__ = ["DatabaseCollector"]

logger = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Reads :func:`~exchange.metrics.figures.current_figures` in a session of its own
    each time it is collected. When the database does not answer it says so
    (``shancheng_database_up 0``) and gives no other figure, rather than old ones."""

    def __init__(
        self, session_factory: Callable[[], Session], clock: Callable[[], float] = time.time
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._session_factory() as session:
                figures = current_figures(session)
        except SQLAlchemyError as exc:
            logger.warning("metrics: the database did not answer: %s", exc)
            yield _gauge("shancheng_database_up", "1 when the database answered this scrape.", 0)
            return
        yield _gauge("shancheng_database_up", "1 when the database answered this scrape.", 1)
        yield _gauge("shancheng_log_entries", "Entries in the log.", figures.log_size)
        yield _gauge(
            "shancheng_checkpoint_tree_size",
            "Tree size of the latest signed checkpoint.",
            figures.checkpoint_size,
        )
        yield _gauge(
            "shancheng_sequencer_lag_entries",
            "Log entries not yet in a signed checkpoint.",
            figures.sequencer_lag,
        )
        anchors = GaugeMetricFamily(
            "shancheng_anchors", "Anchor transactions by state.", labels=["state"]
        )
        for state, count in sorted(figures.anchor_states.items()):
            anchors.add_metric([state], count)
        yield anchors
        yield _gauge(
            "shancheng_anchored_tree_size",
            "Tree size of the largest anchor on chain (anchored or final).",
            figures.anchored_size,
        )
        yield _gauge(
            "shancheng_oldest_unanchored_age_seconds",
            "Age of the oldest log entry no on-chain anchor covers (0 when none).",
            figures.oldest_unanchored_age_s(int(self._clock() * 1000)),
        )
        yield _gauge(
            "shancheng_pending_deliveries",
            "Paid orders not delivered yet.",
            figures.pending_deliveries,
        )
        yield _gauge(
            "shancheng_pending_computations",
            "Queries (computations) no agent has answered yet.",
            figures.pending_computations,
        )
        yield _gauge(
            "shancheng_pending_payouts",
            "Withdrawals waiting for an operator to pay or reject them.",
            figures.pending_payouts,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
