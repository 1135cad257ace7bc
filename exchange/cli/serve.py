"""``shancheng serve``: the exchange API alone, configured by SHANCHENG_* variables.

With ``--json`` it prints its startup map as one JSON document on stdout (URLs,
database, chain) just before the server starts listening. Its logs go to stderr,
one JSON object per line (:mod:`exchange.observability.log_format`), a line per
request among them (uvicorn's own access log is off). With ``--workers N`` uvicorn
runs N worker processes of
the app (its own supervisor); the log stays one sequence because every write
transaction takes the database's log lock, and the sequencer and the anchoring
worker run in one process each, elected by a database (or file) lock. The workers
count their metrics in prometheus-client's multiprocess mode, in a fresh
``prometheus`` directory under the data directory
(:func:`exchange.metrics.exposition.prepare_multiprocess_dir`).
A script reads the document, then polls ``/health`` until
the server answers. ``shancheng run`` (:mod:`exchange.cli.run`) shares the
helpers here.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clients.cli._common import CLIError
from clients.cli.output import Output
from exchange.local_exchange import port_is_free


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the startup map (api, explorer, docs, health, database, rpc_url, "
            "registry_address) as one JSON document on stdout; logs go to stderr.",
        ),
    ] = False,
    workers: int = typer.Option(
        1,
        min=1,
        help="uvicorn worker processes (PostgreSQL, or SQLite for a light load): they "
        "group-commit each on their own and elect one sequencer and one anchoring worker.",
    ),
) -> None:
    """Serve the exchange API with the configuration from SHANCHENG_* variables."""
    import uvicorn

    from exchange.app import create_app
    from exchange.db import redact_url
    from exchange.metrics.exposition import prepare_multiprocess_dir
    from exchange.migrations import SchemaError
    from exchange.settings import Settings

    require_free_port(host, port, "the exchange API")
    try:
        settings = Settings()
    except ValueError as exc:
        raise CLIError(f"invalid settings: {exc}") from exc
    try:
        app = create_app(settings)
    except SchemaError as exc:
        raise CLIError(str(exc)) from exc
    if as_json:
        Output(as_json).json(
            {
                **urls(f"http://{host}:{port}"),
                "database": redact_url(settings.resolved_database_url),
                "rpc_url": settings.rpc_url,
                "registry_address": settings.registry_address,
            }
        )
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info", log_config=log_config())
        return
    # The app above prepared the database (migrations, log key); each
    # worker process builds its own from the same SHANCHENG_* variables.
    app.state.engine.dispose()
    prepare_multiprocess_dir(settings.data_dir)  # before any worker imports prometheus-client
    uvicorn.run(
        "exchange.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        log_config=log_config(),
    )


def urls(api: str) -> dict[str, str]:
    """The startup map's addresses of the API at ``api``."""
    return {
        "api": api,
        "explorer": f"{api}/",
        "docs": f"{api}/docs",
        "health": f"{api}/health",
    }


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration: JSON lines on stderr, stdout left to ``--json``."""
    from exchange.observability.log_format import uvicorn_log_config

    return uvicorn_log_config()


def require_free_port(host: str, port: int, what: str) -> None:
    if not port_is_free(host, port):
        raise CLIError(
            f"port {port} on {host} is already in use; choose another for {what} with --port"
        )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
