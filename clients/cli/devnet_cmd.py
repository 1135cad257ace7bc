"""``shancheng devnet up | down | status``: a detached local anvil under ``var/devnet``.

Each prints lines for people, or with ``--json`` one JSON document
(:class:`clients.cli.output.Output`): ``running`` plus, for a running node, its
pid, RPC URL, chain id, block number and state file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clients.cli._common import CLIError, stdout
from clients.cli.output import Output
from devnet.launcher import Devnet, DevnetConfig, DevnetError, chain_id_at, rpc_call

devnet_app = typer.Typer(help="Run the local anvil devnet (test keys only).", no_args_is_help=True)

StateDir = typer.Option(
    Path("var/devnet"), "--state-dir", help="Where chain state, log and pid live."
)
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document (running, pid, rpc_url, chain_id, block_number, "
        "state_file, note) instead.",
    ),
]


@devnet_app.command("up")
def up(
    state_dir: Path = StateDir,
    port: int = typer.Option(8545, help="Port on 127.0.0.1; 0 picks a free one."),
    as_json: JsonFlag = False,
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
def down(
    state_dir: Path = StateDir,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (running: false, stopped_pid: the pid stopped "
            "or null when none ran) instead.",
        ),
    ] = False,
) -> None:
    """Stop the background devnet (SIGTERM, then SIGKILL); its state is kept."""
    out = Output(as_json)
    node = Devnet.attach(DevnetConfig(state_dir=state_dir))
    if node is None:
        if as_json:
            out.json({"running": False, "stopped_pid": None})
        else:
            stdout.print("devnet is not running")
        return
    pid = node.pid
    try:
        node.stop()
    except DevnetError as exc:
        raise CLIError(str(exc)) from exc
    if as_json:
        out.json({"running": False, "stopped_pid": pid})
        return
    stdout.print(f"devnet stopped (pid {pid})")


@devnet_app.command("status")
def status(
    state_dir: Path = StateDir,
    as_json: JsonFlag = False,
) -> None:
    """Say whether the background devnet runs and answers; exit 1 when it does not."""
    node = Devnet.attach(DevnetConfig(state_dir=state_dir))
    if node is None:
        if as_json:
            Output(as_json).json({"running": False})
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
        Output(as_json).json(facts)
        return
    stdout.print(
        f"devnet {note}: {node.rpc_url} (chain {chain_id}, block {block}, pid {node.pid})\n"
        "[yellow]Its funded accounts come from anvil's public test mnemonic: test use only.[/]"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(devnet_app, name="devnet")
