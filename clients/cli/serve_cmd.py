"""``shancheng serve`` (the API alone) and ``shancheng run`` (devnet + contracts + API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from clients.cli._common import CLIError, stderr, stdout
from clients.local_exchange import port_is_free
from devnet.launcher import DevnetError

if TYPE_CHECKING:
    from clients.local_exchange import LocalChain
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
    from clients.local_exchange import dev_operator_key, local_chain, with_operator
    from devnet.deploy import DeployError
    from exchange.app import create_app
    from exchange.keys import LogKeyError
    from exchange.settings import Settings

    _require_free_port("127.0.0.1", port, "the exchange API")
    try:
        operator_key_file, operator = dev_operator_key(data_dir)
    except LogKeyError as exc:
        raise CLIError(str(exc)) from exc

    def port_taken(taken: int) -> None:
        stderr.print(f"port {taken} is taken; the devnet takes a free port instead")

    try:
        with local_chain(
            data_dir / "devnet",
            port=chain_port,
            block_time=block_time or None,
            on_port_taken=port_taken,
        ) as chain:
            settings = with_operator(
                Settings(
                    data_dir=data_dir,
                    rpc_url=chain.rpc_url,
                    registry_address=chain.registry_address,
                    database_url=os.environ.get("SHANCHENG_DATABASE_URL")
                    or os.environ.get("DATABASE_URL"),
                ),
                operator,
            )
            _print_map(settings, port, chain, operator_key_file)
            import uvicorn

            uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="info")
        if chain.started_here:
            stdout.print("devnet stopped; chain state kept in " + str(chain.node.config.state_file))
    except (DevnetError, DeployError) as exc:
        raise CLIError(str(exc)) from exc


def _print_map(settings: Settings, port: int, chain: LocalChain, operator_key: Path) -> None:
    from exchange.db import redact_url

    node, registry, reused = chain.node, chain.registry_address, chain.registry_reused

    table = Table(title="Shancheng Data Exchange (local)", show_header=False)
    table.add_row("API", f"http://127.0.0.1:{port}")
    table.add_row("API docs", f"http://127.0.0.1:{port}/docs")
    table.add_row("Health", f"http://127.0.0.1:{port}/health")
    table.add_row("Database", redact_url(settings.resolved_database_url))
    table.add_row("Chain RPC", f"{node.rpc_url} (chain id {node.chain_id}; {node.state_note})")
    table.add_row("AnchorRegistry", f"{registry} ({'reused' if reused else 'deployed now'})")
    table.add_row("Chain state", str(node.config.state_file))
    table.add_row("Operator key", f"{operator_key} (dev operator, used by `shancheng demo`)")
    stdout.print(table)
    stdout.print(
        "[yellow]Devnet accounts come from anvil's public test mnemonic: test use only.[/]"
    )
    stdout.print("Press Ctrl-C to stop everything.")


def _require_free_port(host: str, port: int, what: str) -> None:
    if not port_is_free(host, port):
        raise CLIError(
            f"port {port} on {host} is already in use; choose another for {what} with --port"
        )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("run")(run)
