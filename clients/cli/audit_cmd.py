"""``shancheng audit verify|log``: check receipts and the log against the chain.

The chain's RPC URL and the registry come from ``--rpc`` / ``--registry``, else
``SHANCHENG_RPC_URL`` / ``SHANCHENG_REGISTRY_ADDRESS``, else the config file, else
the ``/health`` of the exchange named with ``--exchange`` (printed, to be pinned):
see :mod:`clients.cli.chain_config`. ``audit receipt`` fetches bundles
(:mod:`clients.cli.receipt_cmd`).

Exit codes: 0 every check passed; 1 a check failed (the failing step is named
with its expected and actual values); 2 the audit could not run (unusable
input: a missing or malformed bundle, an unknown bundle version, a bad key
file or address; or the chain / exchange could not be read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from clients.cli._common import CLIError, stdout
from clients.cli._runtime import load_config
from clients.cli.chain_config import check_address, require_chain, resolve_chain

audit_app = typer.Typer(
    name="audit",
    help="Verify receipt bundles and the exchange's log against the chain.",
    no_args_is_help=True,
)

EXIT_FAILED = 1
EXIT_UNUSABLE = 2

_MARKS = {"passed": "[green]✓[/]", "failed": "[bold red]✗[/]", "skipped": "[dim]–[/]"}

RpcOption = Annotated[
    str | None,
    typer.Option(
        "--rpc",
        help="JSON-RPC URL of the chain holding the registry (env SHANCHENG_RPC_URL, "
        "config rpc_url).",
        show_default=False,
    ),
]
RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Address of the AnchorRegistry you trust (env SHANCHENG_REGISTRY_ADDRESS, "
        "config registry_address).",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (default: $SHANCHENG_CONFIG or ~/.config/shancheng/config.toml).",
        show_default=False,
    ),
]
LogKeyOption = Annotated[
    Path | None,
    typer.Option("--log-key", help="PEM file of the exchange's log public key to pin."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON report instead.")]


def _say(text: str) -> None:
    """One line of rich markup, never wrapped (hashes stay on one line)."""
    stdout.print(text, highlight=False, soft_wrap=True)


def _load_log_key(path: Path | None) -> Any:
    from ledger.errors import KeyFormatError
    from ledger.sm2 import SM2PublicKey

    if path is None:
        return None
    try:
        return SM2PublicKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        raise CLIError(f"log key file not found: {path}", EXIT_UNUSABLE) from None
    except OSError as exc:
        raise CLIError(f"cannot read log key file {path}: {exc.strerror}", EXIT_UNUSABLE) from None
    except KeyFormatError as exc:
        raise CLIError(f"{path} is not an SM2 public key PEM: {exc}", EXIT_UNUSABLE) from None


def _print_steps(steps: list[Any]) -> None:
    for step in steps:
        mark = _MARKS[step.status.value]
        line = f"{mark} [bold]{step.name}[/]"
        if step.detail:
            line += f"  {escape(step.detail)}"
        _say(line)
        if step.status.value == "failed" and (step.expected or step.actual):
            _say(f"    expected: {escape(str(step.expected))}")
            _say(f"    actual:   {escape(str(step.actual))}")


def _failure_text(exc: Any) -> str:
    text = f"audit failed at step {exc.step}: {exc.message}"
    if exc.expected is not None or exc.actual is not None:
        text += f" (expected {exc.expected}, actual {exc.actual})"
    return text


def _failure_dict(exc: Any) -> dict[str, Any]:
    return {
        "step": exc.step,
        "message": exc.message,
        "expected": exc.expected,
        "actual": exc.actual,
    }


def _emit_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@audit_app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="The receipt bundle (JSON) to verify.")],
    rpc: RpcOption = None,
    registry: RegistryOption = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check everything but the chain (no --rpc needed).")
    ] = False,
    log_key: LogKeyOption = None,
    min_confirmations: Annotated[
        int,
        typer.Option("--min-confirmations", min=1, help="Confirmations for the anchor to count."),
    ] = 1,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    exchange: Annotated[
        str | None,
        typer.Option(
            "--exchange",
            help="Read the chain and registry from this exchange's /health when no flag, "
            "variable or config file gives them (the address is printed: pin it).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Verify a receipt: signature → leaf hash → inclusion → checkpoint → chain anchor."""
    from clients.audit import verify_bundle_file
    from ledger.audit import AuditError, AuditInconclusiveError
    from ledger.bundle import BundleFormatError

    _refuse_error_body(bundle)
    if not offline:
        choice = resolve_chain(rpc, registry, config=config, exchange=exchange)
        rpc, registry = require_chain(choice, " (or --offline)")
    elif registry is not None:
        check_address(registry)
    trusted = _load_log_key(log_key)
    try:
        report = verify_bundle_file(
            bundle,
            rpc,
            registry,
            offline=offline,
            trusted_log_key=trusted,
            min_confirmations=min_confirmations,
        )
    except FileNotFoundError:
        raise CLIError(f"bundle not found: {bundle}", EXIT_UNUSABLE) from None
    except IsADirectoryError:
        raise CLIError(f"bundle is a directory: {bundle}", EXIT_UNUSABLE) from None
    except OSError as exc:
        raise CLIError(f"cannot read bundle {bundle}: {exc.strerror}", EXIT_UNUSABLE) from None
    except BundleFormatError as exc:
        raise CLIError(f"{bundle} is not a usable bundle: {exc}", EXIT_UNUSABLE) from None
    except AuditError as exc:
        if as_json:
            _emit_json({**exc.report.to_dict(), "failure": _failure_dict(exc)})
        else:
            _print_steps(exc.report.steps)
        raise CLIError(_failure_text(exc), EXIT_FAILED) from None
    except AuditInconclusiveError as exc:
        if exc.report is not None and not as_json:
            _print_steps(exc.report.steps)
        raise CLIError(f"audit inconclusive: {exc}", EXIT_UNUSABLE) from None
    if as_json:
        _emit_json(report.to_dict())
        return
    _print_steps(report.steps)
    if offline:
        _say("all offline checks passed (the chain was not consulted)")
    else:
        _say("[bold green]receipt verified against the chain[/]")


@audit_app.command("log")
def log_command(
    exchange: Annotated[
        str | None,
        typer.Option(
            "--exchange",
            help="Base URL of the exchange (public GET endpoints; default: the configured "
            "exchange_url). Its /health gives the chain and registry when nothing else does.",
            show_default=False,
        ),
    ] = None,
    rpc: RpcOption = None,
    registry: RegistryOption = None,
    spot_checks: Annotated[
        int, typer.Option("--spot-checks", min=0, help="Random entries to check in full.")
    ] = 8,
    log_key: LogKeyOption = None,
    from_block: Annotated[
        int,
        typer.Option("--from-block", min=0, help="First block to search for anchors."),
    ] = 0,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Walk every anchored checkpoint: roots, consistency proofs, spot-checked entries."""
    from clients.audit import walk_log
    from clients.cli.output import transfer_progress
    from ledger.audit import AuditError, AuditInconclusiveError

    if exchange is None:
        exchange = load_config(config).exchange_url
    choice = resolve_chain(rpc, registry, config=config, exchange=exchange)
    rpc, registry = require_chain(choice)
    trusted = _load_log_key(log_key)
    try:
        with transfer_progress("auditing the log", None, enabled=not as_json, unit="checks") as bar:
            report = walk_log(
                exchange,
                rpc,
                registry,
                spot_checks=spot_checks,
                trusted_log_key=trusted,
                from_block=from_block,
                progress=bar,
            )
    except AuditError as exc:
        if as_json:
            _emit_json({"ok": False, **exc.report.to_dict(), "failure": _failure_dict(exc)})
        else:
            _print_checks(exc.report.checks)
            _say(f"[bold red]✗[/] [bold]{exc.step}[/]  {escape(exc.message)}")
            if exc.expected is not None or exc.actual is not None:
                _say(f"    expected: {escape(str(exc.expected))}")
                _say(f"    actual:   {escape(str(exc.actual))}")
        raise CLIError(_failure_text(exc), EXIT_FAILED) from None
    except AuditInconclusiveError as exc:
        raise CLIError(f"audit inconclusive: {exc}", EXIT_UNUSABLE) from None
    if as_json:
        _emit_json({"ok": True, **report.to_dict()})
        return
    _print_checks(report.checks)
    if not report.anchors:
        _say("nothing is anchored in this registry yet: nothing to check")
        return
    _say(
        f"[bold green]log consistent[/] with {len(report.anchors)} anchored checkpoint(s) "
        f"up to tree size {report.anchors[-1].tree_size}; "
        f"{len(report.spot_checked)} entries spot-checked",
    )


def _refuse_error_body(path: Path) -> None:
    """A file holding the exchange's error body (``{"code", "message"}``, e.g. a
    receipt fetched before it was ready) is named as such, not parsed as a bundle."""
    try:
        data = json.loads(path.read_bytes()[:65_536])
    except (OSError, ValueError):
        return  # the verifier reports unreadable and malformed files itself
    if isinstance(data, dict) and set(data) >= {"code", "message"} and "version" not in data:
        raise CLIError(
            f"{path} holds an error answer of the exchange, not a bundle: {data.get('code')}: "
            f"{data.get('message')}; fetch receipts with `shancheng audit receipt INDEX --out "
            "FILE` (it waits with --wait and never saves an error)",
            EXIT_UNUSABLE,
        )


@audit_app.command("reference-price")
def reference_price_command(
    listing: Annotated[str, typer.Argument(help="The listing's id (UUID).", show_default=False)],
    exchange: Annotated[
        str, typer.Option("--exchange", help="Base URL of the exchange (public GET endpoints).")
    ],
    log_key: LogKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute a listing's reference price from the public log and compare."""
    from clients.reference_audit import NotIntegratedError, audit_reference_price
    from clients.sdk import ExchangeClient
    from clients.sdk.errors import ClientError

    trusted = _load_log_key(log_key)
    try:
        with ExchangeClient(exchange, trusted_log_key=trusted) as client:
            result = audit_reference_price(client, listing)
    except NotIntegratedError as exc:
        raise CLIError(f"audit inconclusive: {exc}", EXIT_UNUSABLE) from None
    except ClientError as exc:
        raise CLIError(f"could not read the exchange: {exc}", EXIT_UNUSABLE) from None
    ok = not result.differences
    if as_json:
        _emit_json({"ok": ok, "differences": result.differences, "recomputed": result.recomputed})
    elif ok:
        size = result.served["as_of"]["log_size"]
        _say(f"[bold green]reference price recomputed[/] from the log's first {size} entries")
    else:
        for line in result.differences:
            _say(f"[bold red]✗[/] {escape(line)}")
    if not ok:
        raise CLIError(f"{len(result.differences)} difference(s)", EXIT_FAILED)


def _print_checks(checks: list[Any]) -> None:
    for check in checks:
        _say(
            f"[green]✓[/] [bold]{check.step}[/]  {escape(check.subject)}: {escape(check.detail)}",
        )


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
