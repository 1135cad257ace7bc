"""``shancheng serve`` (the API alone) and ``shancheng run`` (devnet + contracts + API)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from clients.cli._common import CLIError, stderr, stdout
from devnet.launcher import Devnet, DevnetConfig, DevnetError

if TYPE_CHECKING:
    from exchange.settings import Settings

DEFAULT_CHAIN_PORT = 8545
DEFAULT_BLOCK_TIME = 1.0


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
) -> None:
    """Serve the exchange API with the configuration from SHANCHENG_* variables."""
    import uvicorn

    from exchange.app import create_app

    _require_free_port(host, port, "the exchange API")
    uvicorn.run(create_app(), host=host, port=port, log_level="info")


def run(
    data_dir: Path = typer.Option(
        Path("var"), help="Where the database, chain state and keys live."
    ),
    port: int = typer.Option(8000, help="Port of the exchange API on 127.0.0.1."),
    chain_port: int = typer.Option(
        DEFAULT_CHAIN_PORT, help="Port of the devnet on 127.0.0.1 (a free one if taken)."
    ),
    block_time: float = typer.Option(
        DEFAULT_BLOCK_TIME,
        help="Seconds between devnet blocks, so anchors gather confirmations; 0 mines "
        "one block per transaction.",
    ),
) -> None:
    """Start the local devnet, deploy (or reuse) the contracts and serve the exchange.

    Ctrl-C stops everything this command started.
    """
    # Imported here: web3 and FastAPI take a second to import, and every
    # other command would pay for it.
    from devnet.deploy import DeployError, ensure_registry
    from exchange.app import create_app
    from exchange.settings import Settings

    _require_free_port("127.0.0.1", port, "the exchange API")
    devnet_config = DevnetConfig(
        state_dir=data_dir / "devnet", port=chain_port, block_time=block_time or None
    )
    node = Devnet.attach(devnet_config)
    started_here = node is None
    if node is None:
        if not _port_is_free("127.0.0.1", chain_port):
            stderr.print(f"port {chain_port} is taken; the devnet takes a free port instead")
            devnet_config = replace(devnet_config, port=None)
        try:
            node = Devnet(devnet_config).start()
        except DevnetError as exc:
            raise CLIError(str(exc)) from exc
    try:
        try:
            deployment, reused = ensure_registry(
                node.rpc_url, data_dir / "devnet" / "deployment.json"
            )
        except DeployError as exc:
            raise CLIError(str(exc)) from exc
        settings = Settings(
            data_dir=data_dir,
            rpc_url=node.rpc_url,
            registry_address=deployment.registry_address,
            database_url=os.environ.get("SHANCHENG_DATABASE_URL") or os.environ.get("DATABASE_URL"),
        )
        _print_map(settings, port, node, deployment.registry_address, reused)
        import uvicorn

        uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="info")
    finally:
        if started_here:
            node.stop()
            stdout.print("devnet stopped; chain state kept in " + str(devnet_config.state_file))


def _print_map(settings: Settings, port: int, node: Devnet, registry: str, reused: bool) -> None:
    from exchange.db import redact_url

    table = Table(title="Shancheng Data Exchange (local)", show_header=False)
    table.add_row("API", f"http://127.0.0.1:{port}")
    table.add_row("API docs", f"http://127.0.0.1:{port}/docs")
    table.add_row("Health", f"http://127.0.0.1:{port}/health")
    table.add_row("Database", redact_url(settings.resolved_database_url))
    table.add_row("Chain RPC", f"{node.rpc_url} (chain id {node.chain_id}; {node.state_note})")
    table.add_row("AnchorRegistry", f"{registry} ({'reused' if reused else 'deployed now'})")
    table.add_row("Chain state", str(node.config.state_file))
    stdout.print(table)
    stdout.print(
        "[yellow]Devnet accounts come from anvil's public test mnemonic: test use only.[/]"
    )
    stdout.print("Press Ctrl-C to stop everything.")


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _require_free_port(host: str, port: int, what: str) -> None:
    if not _port_is_free(host, port):
        raise CLIError(
            f"port {port} on {host} is already in use; choose another for {what} with --port"
        )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("run")(run)
