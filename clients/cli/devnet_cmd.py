"""``shancheng devnet up | down | status``: a detached local anvil under ``var/devnet``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from clients.cli._common import CLIError, stdout
from devnet.launcher import Devnet, DevnetConfig, DevnetError, chain_id_at, rpc_call

devnet_app = typer.Typer(help="Run the local anvil devnet (test keys only).", no_args_is_help=True)

StateDir = typer.Option(
    Path("var/devnet"), "--state-dir", help="Where chain state, log and pid live."
)


@devnet_app.command("up")
def up(
    state_dir: Path = StateDir,
    port: int = typer.Option(8545, help="Port on 127.0.0.1; 0 picks a free one."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Start the devnet in the background (or report the one already running)."""
    config = DevnetConfig(state_dir=state_dir, port=port or None)
    node = Devnet.attach(config)
    note = "already running"
    if node is None:
        try:
            node = Devnet(config).start(detached=True)
        except DevnetError as exc:
            raise CLIError(str(exc)) from exc
        note = node.state_note
    _report(node, note, as_json)


@devnet_app.command("down")
def down(state_dir: Path = StateDir) -> None:
    """Stop the background devnet (SIGTERM, then SIGKILL); its state is kept."""
    node = Devnet.attach(DevnetConfig(state_dir=state_dir))
    if node is None:
        stdout.print("devnet is not running")
        return
    pid = node.pid
    try:
        node.stop()
    except DevnetError as exc:
        raise CLIError(str(exc)) from exc
    stdout.print(f"devnet stopped (pid {pid})")


@devnet_app.command("status")
def status(
    state_dir: Path = StateDir,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Say whether the background devnet runs and answers; exit 1 when it does not."""
    node = Devnet.attach(DevnetConfig(state_dir=state_dir))
    if node is None:
        if as_json:
            stdout.print_json(json.dumps({"running": False}))
        else:
            stdout.print("devnet is not running")
        raise typer.Exit(1)
    _report(node, "running", as_json)


def _report(node: Devnet, note: str, as_json: bool) -> None:
    try:
        chain_id = chain_id_at(node.rpc_url)
        block = int(str(rpc_call(node.rpc_url, "eth_blockNumber")), 16)
    except DevnetError as exc:
        raise CLIError(f"devnet (pid {node.pid}) does not answer: {exc}", exit_code=1) from exc
    facts = {
        "running": True,
        "pid": node.pid,
        "rpc_url": node.rpc_url,
        "chain_id": chain_id,
        "block_number": block,
        "state_file": str(node.config.state_file),
        "note": note,
    }
    if as_json:
        stdout.print_json(json.dumps(facts))
        return
    stdout.print(
        f"devnet {note}: {node.rpc_url} (chain {chain_id}, block {block}, pid {node.pid})\n"
        "[yellow]Its funded accounts come from anvil's public test mnemonic: test use only.[/]"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(devnet_app, name="devnet")
