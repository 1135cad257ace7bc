"""``shancheng anchor-worker``: the anchoring worker as its own process.

Use it when several API processes share one database: run them with
``SHANCHENG_ANCHOR_WORKER_ENABLED=false`` (or let them step aside: only the
holder of the single-worker lock anchors) and run one of these. The signing key
comes from ``SHANCHENG_ANCHOR_KEY`` only, never from a flag (command lines are
visible to every user of the machine).

With ``--json`` stdout carries only the reports of the passes, one JSON object
per line (JSON Lines), written as each pass ends; with ``--once`` that is a
single line, i.e. one JSON document. The status lines go to stderr then.

The worker is the API process's own (:class:`exchange.anchoring.service.AnchoringService`);
only how the lock is taken differs: this command may wait for it.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

from clients.cli._common import CLIError, stderr, stdout
from clients.cli.output import plain

if TYPE_CHECKING:
    from exchange.anchoring.worker import AnchorWorker, WorkerReport

EXIT_LOCK_HELD = 3


def anchor_worker(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data directory (default SQLite database lives there)."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="SQLAlchemy URL (default: SHANCHENG_DATABASE_URL)."
    ),
    rpc_url: str | None = typer.Option(None, "--rpc-url", help="JSON-RPC endpoint of the chain."),
    registry: str | None = typer.Option(None, "--registry", help="AnchorRegistry address."),
    interval: float | None = typer.Option(
        None, "--interval", help="Seconds between anchors (SHANCHENG_ANCHOR_INTERVAL_S)."
    ),
    threshold: int | None = typer.Option(
        None, "--threshold", help="Unanchored leaves that trigger an anchor at once."
    ),
    confirmations: int | None = typer.Option(
        None, "--confirmations", help="Confirmations that make an anchor final."
    ),
    poll: float | None = typer.Option(None, "--poll", help="Seconds between passes."),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for the active worker to stop instead of exiting."
    ),
    once: bool = typer.Option(False, "--once", help="Run one pass, print its report, exit."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print each pass's report as one JSON object per line on stdout (ok, "
        "chain_available, error, decision, and the tree sizes created, signed, broadcast, "
        "waiting, anchored, finalized, reorged, superseded, conflicts); with --once, one "
        "JSON document. Status lines go to stderr.",
    ),
) -> None:
    """Anchor the log's checkpoints to the AnchorRegistry (one active worker per database).

    Exits with code 3 when another worker already holds the lock (unless --wait).
    """
    from contracts.chain import require_key_for_chain
    from contracts.errors import ChainUnavailableError, SigningKeyError
    from exchange.anchoring.lock import worker_lock
    from exchange.anchoring.service import AnchoringConfigError, AnchoringService
    from exchange.db import make_engine, redact_url
    from exchange.migrations import SchemaError, ensure_schema
    from exchange.settings import Settings

    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "rpc_url": rpc_url,
        "registry_address": registry,
        "anchor_interval_s": interval,
        "anchor_size_threshold": threshold,
        "anchor_confirmations": confirmations,
        "anchor_poll_s": poll,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise CLIError(f"invalid settings: {exc}") from exc
    if not settings.rpc_url or not settings.registry_address:
        raise CLIError(
            "name the chain: --rpc-url and --registry "
            "(or SHANCHENG_RPC_URL and SHANCHENG_REGISTRY_ADDRESS)"
        )
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )

    stop = threading.Event()
    running: list[AnchorWorker] = []

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        for worker in running:
            worker.stop(timeout=0)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    engine = make_engine(settings.resolved_database_url)
    try:
        ensure_schema(engine)  # as the API does at start-up: the anchor table is Alembic's
    except SchemaError as exc:
        engine.dispose()
        raise CLIError(str(exc)) from exc
    lock = worker_lock(engine)
    database = redact_url(settings.resolved_database_url)
    try:
        if not lock.try_acquire():
            if not wait:
                raise CLIError(
                    f"another anchoring worker is active for {database} ({lock.description}); "
                    "use --wait to take over when it stops",
                    exit_code=EXIT_LOCK_HELD,
                )
            _say(
                f"waiting for the active anchoring worker to stop ({lock.description})",
                err=as_json,
            )
            if not lock.acquire(wait=True, stop=stop):
                return
        try:
            service = AnchoringService.for_lock_holder(settings, engine, lock)
            worker = service.worker
            try:
                configured = settings.anchor_key
                key = None if configured is None else configured.get_secret_value()
                require_key_for_chain(worker.chain.chain_id(), key)
            except ChainUnavailableError as exc:
                _say(f"chain not reachable yet, will retry: {exc.detail}", err=True)
        except (AnchoringConfigError, SigningKeyError) as exc:
            raise CLIError(str(exc)) from exc
        running.append(worker)
        _say(
            f"anchoring worker active: {database} -> registry {worker.registry.address} "
            f"at {settings.rpc_url} ({lock.description})",
            err=as_json,
        )
        if as_json:
            _report_passes_as_json(worker)
        if once:
            report = worker.run_once()
            if not as_json:
                _say(report.summary())
            if not report.ok:
                raise typer.Exit(1)
            return
        service.run_forever()
        _say("anchoring worker stopped", err=as_json)
    finally:
        lock.release()
        engine.dispose()


def _report_passes_as_json(worker: AnchorWorker) -> None:
    """Make every pass of ``worker`` (``--once`` or the loop's) print its report as a
    JSON line; a pass that raises prints a report with its ``error`` and re-raises."""
    from exchange.anchoring.worker import WorkerReport

    one_pass = worker.run_once

    def run_once_reporting() -> WorkerReport:
        try:
            report = one_pass()
        except Exception as exc:
            _json_line(WorkerReport(error=f"{type(exc).__name__}: {exc}"))
            raise
        _json_line(report)
        return report

    # The loop calls self.run_once(): the instance attribute takes precedence.
    worker.run_once = run_once_reporting  # type: ignore[method-assign]


def _json_line(report: WorkerReport) -> None:
    document = {"ok": report.ok, **plain(report)}
    typer.echo(json.dumps(document, ensure_ascii=False))  # click.echo flushes


def _say(message: str, *, err: bool = False) -> None:
    console = stderr if err else stdout
    console.print(message, highlight=False, soft_wrap=True)
    console.file.flush()


def register(app: typer.Typer) -> None:
    app.command("anchor-worker")(anchor_worker)
