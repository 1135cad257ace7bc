"""``shancheng run`` (what ``make run`` starts): devnet + contracts + the exchange API.

With ``--json`` it prints its startup map as one JSON document on stdout (URLs,
database, chain, registry, operator key) just before the server starts
listening, and sends everything else to stderr, as ``serve --json`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from clients.cli._common import CLIError, stderr, stdout
from clients.cli.output import Output
from devnet.launcher import DevnetError
from exchange.cli.serve import log_config, require_free_port, urls

if TYPE_CHECKING:
    from exchange.local_exchange import LocalChain
    from exchange.settings import Settings

DEFAULT_CHAIN_PORT = 8545
DEFAULT_BLOCK_TIME = 1.0


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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the startup map (api, explorer, docs, health, database, chain, registry, "
            "operator_key) as one JSON document on stdout; everything else goes to stderr.",
        ),
    ] = False,
) -> None:
    """Start the local devnet, deploy (or reuse) the contracts and serve the exchange.

    Ctrl-C stops everything this command started.
    """
    # Imported here: web3 and FastAPI take a second to import, and every
    # other command would pay for it.
    from devnet.deploy import DeployError
    from exchange.app import create_app
    from exchange.keys import LogKeyError
    from exchange.local_exchange import dev_operator_key, local_chain, with_operator
    from exchange.migrations import SchemaError
    from exchange.settings import Settings

    require_free_port("127.0.0.1", port, "the exchange API")
    try:
        operator_key_file, operator = dev_operator_key(data_dir)
    except LogKeyError as exc:
        raise CLIError(str(exc)) from exc

    notes = stderr if as_json else stdout  # the human lines around the map

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
                _devnet_anchoring(
                    Settings(
                        data_dir=data_dir,
                        rpc_url=chain.rpc_url,
                        registry_address=chain.registry_address,
                        database_url=os.environ.get("SHANCHENG_DATABASE_URL")
                        or os.environ.get("DATABASE_URL"),
                    )
                ),
                operator,
            )
            startup = _startup_map(settings, port, chain, operator_key_file)
            if as_json:
                Output(as_json).json(startup)
            else:
                _print_map(startup)
            notes.print(
                "[yellow]Devnet accounts come from anvil's public test mnemonic: test use only.[/]"
            )
            notes.print("Press Ctrl-C to stop everything.")
            import uvicorn

            uvicorn.run(
                create_app(settings),
                host="127.0.0.1",
                port=port,
                log_level="info",
                log_config=log_config(),
            )
        if chain.started_here:
            notes.print("devnet stopped; chain state kept in " + str(chain.node.config.state_file))
    except (DevnetError, DeployError, SchemaError) as exc:
        raise CLIError(str(exc)) from exc


def _startup_map(
    settings: Settings, port: int, chain: LocalChain, operator_key: Path
) -> dict[str, Any]:
    """What ``run`` started, as plain data (the ``--json`` document)."""
    from exchange.db import redact_url

    node = chain.node
    return {
        **urls(f"http://127.0.0.1:{port}"),
        "database": redact_url(settings.resolved_database_url),
        "chain": {
            "rpc_url": node.rpc_url,
            "chain_id": node.chain_id,
            "state": node.state_note,
            "state_file": str(node.config.state_file),
            "started_here": chain.started_here,
        },
        "registry": {"address": chain.registry_address, "reused": chain.registry_reused},
        "anchoring": {
            "interval_s": settings.anchor_interval_s,
            "size_threshold": settings.anchor_size_threshold,
            "confirmations": settings.anchor_confirmations,
        },
        "operator_key": str(operator_key),
    }


DEVNET_ANCHOR_INTERVAL_S = 10.0
"""On the local devnet an anchor costs nothing real: anchor every 10 s (not every
60 s) so receipts become final within seconds, unless the environment says otherwise."""


def _devnet_anchoring(settings: Settings) -> Settings:
    if "SHANCHENG_ANCHOR_INTERVAL_S" in os.environ:
        return settings
    return settings.model_copy(update={"anchor_interval_s": DEVNET_ANCHOR_INTERVAL_S})


def _print_map(startup: dict[str, Any]) -> None:
    chain, registry = startup["chain"], startup["registry"]
    table = Table(title="Shancheng Data Exchange (local)", show_header=False)
    table.add_row("API", startup["api"])
    table.add_row("Explorer", startup["explorer"])
    table.add_row("API docs", startup["docs"])
    table.add_row("Health", startup["health"])
    table.add_row("Database", startup["database"])
    table.add_row(
        "Chain RPC", f"{chain['rpc_url']} (chain id {chain['chain_id']}; {chain['state']})"
    )
    reused = "reused" if registry["reused"] else "deployed now"
    table.add_row("AnchorRegistry", f"{registry['address']} ({reused})")
    table.add_row("Chain state", chain["state_file"])
    anchoring = startup["anchoring"]
    table.add_row(
        "Anchoring",
        f"every {anchoring['interval_s']:g} s or {anchoring['size_threshold']} records; "
        f"final after {anchoring['confirmations']} blocks",
    )
    table.add_row(
        "Operator key", f"{startup['operator_key']} (dev operator, used by `shancheng demo`)"
    )
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
