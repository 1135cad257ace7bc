"""Which command groups make up ``shancheng``."""

from __future__ import annotations

import typer

from clients.cli import contracts_cmd, crypto_cmd, devnet_cmd, serve_cmd


def register(app: typer.Typer) -> None:
    crypto_cmd.register(app)
    devnet_cmd.register(app)
    contracts_cmd.register(app)
    serve_cmd.register(app)
