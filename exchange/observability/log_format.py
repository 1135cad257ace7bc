"""Log lines as JSON objects, one per line (structlog).

Everything logs through the standard library's ``logging``: the exchange's own
modules, uvicorn, and structlog's loggers (:func:`configure_structlog`). One
formatter (:func:`json_formatter`) renders every record as a JSON object with
``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``process`` (the worker's
pid), ``event`` and whatever was
bound: the ``request_id`` of the request being served (structlog's context
variables), and the fields a structlog call passes (``route``, ``status``,
``duration_ms``, …). An exception's traceback goes in ``exception``, inside the line.
:func:`uvicorn_log_config` is the logging configuration ``shancheng serve`` hands
uvicorn (every worker applies it): uvicorn's own access log is off, replaced by the
exchange's request lines (:mod:`exchange.observability.requests`).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["configure_structlog", "json_formatter", "uvicorn_log_config"]

_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.CallsiteParameterAdder([structlog.processors.CallsiteParameter.PROCESS]),
    _TIMESTAMP,
]


def configure_structlog() -> None:
    """Route structlog's loggers into ``logging`` (rendered by :func:`json_formatter`)."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def json_formatter() -> logging.Formatter:
    """The formatter of every handler: one JSON object per record, on one line."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )


def uvicorn_log_config(stream: str = "ext://sys.stderr") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn: every logger's lines as JSON on
    ``stream``: warnings from everything, information from the exchange and uvicorn;
    uvicorn's access log silenced (the exchange logs each request)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.json_formatter"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": stream,
            }
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            "exchange": {"level": "INFO"},
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
