"""The in-memory instruments: counted by the process that serves or commits.

They belong to no registry of their own: :class:`exchange.metrics.exposition.Metrics`
registers them (one process) or reads their files (several worker processes, when
``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus-client is imported; see
:func:`exchange.metrics.exposition.prepare_multiprocess_dir`).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["APPEND_BATCH_RECORDS", "INSTRUMENTS", "REQUESTS", "REQUEST_SECONDS", "observe_batch"]

REQUESTS = Counter(
    "shancheng_http_requests",
    "HTTP requests answered, by method, route template (not the raw path) and status.",
    ["method", "route", "status"],
    registry=None,
)
REQUEST_SECONDS = Histogram(
    "shancheng_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
APPEND_BATCH_RECORDS = Histogram(
    "shancheng_append_batch_records",
    "Records stored per append transaction of the appender (group commit); its count "
    "is the number of transactions.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536),
    registry=None,
)

INSTRUMENTS = (REQUESTS, REQUEST_SECONDS, APPEND_BATCH_RECORDS)


def observe_batch(records: int) -> None:
    """Count one committed append transaction that stored ``records`` records."""
    APPEND_BATCH_RECORDS.observe(records)
