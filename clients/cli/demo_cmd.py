"""``shancheng demo``: the whole story (providers, operator, buyer, auditor) in one command.

Runs :mod:`clients.demo` against the exchange ``make run`` started, or starts
its own devnet + registry + API on free ports when none answers (with what the
server's side registers the command with, see :func:`register`), then prints a
summary. Exit codes: 0 the story completed and every check passed; 1 a check
failed (one line names the step); 130 interrupted. Whatever the demo started
(its exchange, the provider agent) is stopped in every case; with
``--keep-running`` only at Ctrl-C (or SIGTERM) once the story is told, after
writing ``<work-dir>/story.json`` for a person to go on by hand (exit 0).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from clients.cli._common import CLIError, stdout
from clients.cli._runtime import EXIT_USAGE

if TYPE_CHECKING:
    from clients.demo import Demo, DemoResult, LocalExchangeStarter

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class _RichReporter:
    """Draws the demo's progress: a bar per running step, a line per finished one."""

    def __init__(self, console: Console, progress: Progress) -> None:
        self.console = console
        self.bar = progress
        self.task: TaskID | None = None

    def started(self, step: str, title: str) -> None:
        self._drop_task()
        self.task = self.bar.add_task(escape(title), total=None)

    def progress(self, done: int, total: int | None) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=done, total=total)

    def finished(self, step: str, seconds: float, detail: str) -> None:
        self._drop_task()
        self.console.print(
            f"[green]✓[/] [bold]{step:<11}[/] {seconds:7.2f} s  {escape(detail)}",
            highlight=False,
            soft_wrap=True,
        )

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{escape(text)}[/]", highlight=False, soft_wrap=True)

    def _drop_task(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None


@contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop what was started."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _work_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    temporary = Path(tempfile.mkdtemp(prefix="shancheng-demo-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _demo_command(start_local: LocalExchangeStarter | None) -> Callable[..., None]:
    """The ``demo`` command, starting its own exchange with ``start_local`` (if any)."""

    def demo(
        exchange: Annotated[
            str,
            typer.Option(
                "--exchange",
                "--exchange-url",
                envvar="SHANCHENG_EXCHANGE_URL",
                help="The exchange to run the story against; if none answers /health there, "
                "the demo starts its own (devnet, registry, API on free ports) and stops it after.",
            ),
        ] = "http://127.0.0.1:8000",
        operator_key: Annotated[
            Path,
            typer.Option(
                "--operator-key",
                help="The operator key of that exchange (`make run` creates var/operator-key.pem).",
            ),
        ] = Path("var/operator-key.pem"),
        rows: Annotated[
            int, typer.Option("--rows", min=1, max=10_000_000, help="Rows of the generated CSV.")
        ] = 100_000,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the generated data.")] = 20250701,
        work_dir: Annotated[
            Path | None,
            typer.Option(
                "--work-dir",
                help="Keep the keys, CSV and downloads here (default: a temporary directory, "
                "removed at the end).",
            ),
        ] = None,
        rpc: Annotated[
            str | None,
            typer.Option("--rpc", help="Chain the auditor checks (default: what /health says)."),
        ] = None,
        registry: Annotated[
            str | None,
            typer.Option("--registry", help="Registry the auditor trusts (default: /health's)."),
        ] = None,
        anchor_timeout: Annotated[
            float,
            typer.Option(
                "--anchor-timeout", min=1, help="Most seconds to wait for a final anchor."
            ),
        ] = 300.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        keep_running: Annotated[
            bool,
            typer.Option(
                "--keep-running",
                help="After the story, leave what the demo started (its exchange, the provider "
                "agent) running until Ctrl-C, and write WORK_DIR/story.json (needs --work-dir).",
            ),
        ] = False,
    ) -> None:
        """Run the whole story: keys, listing, review, order, delivery, settlement, audit."""
        from clients.demo import Demo, DemoFailure, SilentReporter, StepTiming, demo_exchange

        if keep_running and work_dir is None:
            raise CLIError("--keep-running needs --work-dir (story.json goes there)", EXIT_USAGE)

        console = Console(stderr=True) if as_json else stdout
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json,
        )
        reporter: Any = SilentReporter() if as_json else _RichReporter(console, progress)
        result: DemoResult | None = None
        try:
            with _terminate_cleanly(), _work_dir(work_dir) as work, progress:
                began = time.monotonic()
                reporter.started("exchange", "Finding the exchange")
                with demo_exchange(
                    exchange,
                    work,
                    operator_key=operator_key,
                    rpc_url=rpc,
                    registry=registry,
                    reporter=reporter,
                    start_local=start_local,
                ) as target:
                    found = time.monotonic() - began
                    where = "started here" if target.started_here else "already running"
                    reporter.finished("exchange", found, f"{target.url} ({where})")
                    with Demo(
                        target,
                        work,
                        rows=rows,
                        seed=seed,
                        reporter=reporter,
                        anchor_timeout=anchor_timeout,
                    ) as story:
                        result = story.run()
                        result.timings.insert(0, StepTiming("exchange", found, target.url))
                        if keep_running:
                            story.write_story(work / "story.json")
                            _report(result, as_json)
                            _keep_running(story, work / "story.json", console)
        except DemoFailure as exc:
            if as_json:
                _emit_json({"ok": False, "step": exc.step, "message": exc.message})
            raise CLIError(str(exc), EXIT_FAILED) from exc
        except KeyboardInterrupt:
            if keep_running and result is not None:
                console.print("stopped everything the demo started", highlight=False)
                return
            raise CLIError(
                "interrupted; everything the demo started has been stopped", EXIT_INTERRUPTED
            ) from None
        if not keep_running:
            _report(result, as_json)

    return demo


def _report(result: DemoResult, as_json: bool) -> None:
    if as_json:
        _emit_json(result.to_dict())
    else:
        _print_summary(result)


def _keep_running(story: Demo, story_file: Path, console: Console) -> None:
    """Wait for Ctrl-C (``KeyboardInterrupt``); fails if the provider agent dies."""
    console.print(
        f"[bold]Still running[/] (exchange {story.exchange.url}, provider agent pid "
        f"{story.agent.pid if story.agent else '-'}); where everything is: {story_file}. "
        f"See it in the explorer at {story.exchange.url}/ (a receipt verified in your "
        f"browser: {story.exchange.url}/verify?index=0). Ctrl-C stops it all.",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    while True:
        if story.agent is None or story.agent.poll() is not None:
            raise CLIError(f"the provider agent stopped; see {story.agent_log}", EXIT_FAILED)
        time.sleep(0.5)


def _emit_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def _print_summary(result: DemoResult) -> None:
    print_ = stdout.print

    steps = Table(title="Steps", title_justify="left")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for timing in result.timings:
        steps.add_row(timing.step, f"{timing.seconds:.2f}")
    steps.add_row("[bold]total[/]", f"[bold]{sum(t.seconds for t in result.timings):.2f}[/]")

    chain = Table(title="Log and chain", title_justify="left", show_header=False)
    chain.add_row("records written", str(len(result.records)))
    chain.add_row("tree size", str(result.tree_size))
    chain.add_row("receipts verified", f"{result.audited}, against the chain")
    chain.add_row("registry", result.registry_address)
    chain.add_row("log walk", f"{result.log_checks} checks passed")
    chain.add_row("gas used", f"{result.gas_used:,} in {len(result.anchors)} anchor tx")

    anchors = Table(title="Anchors", title_justify="left")
    for numeric in ("tree size", "block", "gas", "records"):
        anchors.add_column(numeric, justify="right", no_wrap=True)
    anchors.add_column("tx hash", overflow="fold")
    for anchor in result.anchors:
        anchors.add_row(
            str(anchor["tree_size"]),
            str(anchor["block_number"]),
            f"{anchor.get('gas_used') or 0:,}",
            str(anchor["records"]),
            str(anchor["tx_hash"]),
        )

    orders = Table(
        title="Orders (provider custody: delivered by the provider's agent)", title_justify="left"
    )
    orders.add_column("buyer")
    orders.add_column("rows ordered", justify="right")
    orders.add_column("offset", justify="right")
    orders.add_column("rows delivered", justify="right")
    orders.add_column("price", justify="right")
    for order in result.orders:
        offset = order["row_offset"]
        orders.add_row(
            order["buyer"],
            f"{order['rows_ordered']:,}",
            "whole file" if offset is None else f"{offset:,}",
            f"{order['rows_delivered']:,}",
            _yuan(order["amount"]),
        )

    computed = result.computation
    computation = Table(
        title="Computation (可用不可见: buyer 3 never sees a row)", title_justify="left"
    )
    computation.add_column("district")
    computation.add_column("month", justify="right")
    computation.add_column("avg °C (noisy)", justify="right")
    for district, month, avg in computed["first_rows"]:
        computation.add_row(str(district), str(month), f"{float(avg):.2f}")
    computation.caption = (
        f"{computed['groups']} groups from {computed['rows_scanned']:,} rows, "
        f"ε {computed['epsilon_spent']} spent; {computed['refused']['sql']!r} refused: "
        f"{computed['refused']['reason']}"
    )

    money = Table(title="Final balances", title_justify="left")
    money.add_column("account")
    money.add_column("balance", justify="right")
    money.add_column("note")
    balances, settlement = result.balances, result.settlement
    for order in result.orders:
        buyer = order["buyer"]
        money.add_row(
            buyer, _yuan(balances[buyer]), f"deposited {_yuan(balances[f'{buyer}_deposited'])}"
        )
    money.add_row("provider A", _yuan(balances["provider_a"]), "70 % share")
    money.add_row("provider B", _yuan(balances["provider_b"]), "30 % share")
    money.add_row("platform", _yuan(balances["platform"]), "fees of these sales")
    money.add_row("[bold]settled[/]", f"[bold]{_yuan(settlement['amount'])}[/]", "A + B + platform")

    for table in (steps, orders, computation, chain, anchors, money):
        print_(table)
    print_(
        f"[bold green]Demo complete:[/] {len(result.records)} records, every receipt verified "
        "on chain.",
        highlight=False,
    )
    if not result.started_exchange:
        print_(f"See it in the explorer: {result.exchange_url}/", highlight=False)


def register(app: typer.Typer, start_local: LocalExchangeStarter | None = None) -> None:
    """Add ``demo`` to ``app``. ``start_local`` starts the demo's own exchange when none
    answers; the server's side provides it (this package never imports the server), and
    without it the demo needs an exchange that answers."""
    app.command("demo")(_demo_command(start_local))
