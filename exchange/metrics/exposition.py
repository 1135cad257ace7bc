"""The registry behind ``/metrics`` and the operator page, and the multiprocess
directory of ``shancheng serve --workers N``.

One process: the instruments are registered as they are. Several worker processes:
prometheus-client's multiprocess mode, in which every process writes its counters
and histograms to files under ``PROMETHEUS_MULTIPROC_DIR`` and the scraped worker
sums every process's files (a worker that died keeps its counts: they stay true).
The mode is fixed when prometheus-client is imported, so ``serve`` sets the variable
(:func:`prepare_multiprocess_dir`) before it starts any worker. The exchange keeps
no multiprocess gauge (its gauges come from the database), so no dead worker's
value can linger and none needs marking.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlmodel import Session

from exchange.metrics.collector import DatabaseCollector
from exchange.metrics.instruments import INSTRUMENTS

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "Metrics",
    "Sample",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The multiprocess directory this process writes to, ``None`` in one process."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Make ``data_dir/prometheus`` fresh and empty (the files of an earlier run would
    be summed in) and set ``PROMETHEUS_MULTIPROC_DIR`` to it for the workers to come."""
    path = data_dir / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a collected metric (the operator page's view)."""

    name: str
    labels: dict[str, str]
    value: float


class Metrics:
    """The exchange's metrics registry: the in-memory instruments (or, with
    ``multiprocess_path``, every worker's files) and the database's figures."""

    def __init__(
        self, session_factory: Callable[[], Session], multiprocess_path: str | None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        if multiprocess_path is None:
            for instrument in INSTRUMENTS:
                self.registry.register(instrument)
        else:
            MultiProcessCollector(self.registry, path=multiprocess_path)  # type: ignore[no-untyped-call]
        self.registry.register(DatabaseCollector(session_factory))

    def render(self) -> bytes:
        """The Prometheus text format of everything, collected now."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        return iter(self.registry.collect())

    def samples(self) -> list[Sample]:
        """Every sample, collected now, in the registry's order."""
        return [
            Sample(sample.name, dict(sample.labels), sample.value)
            for metric in self.collect()
            for sample in metric.samples
        ]
