"""Which command groups make up ``shancheng``."""

from __future__ import annotations

import typer

from clients.cli import anchor_cmd, audit_cmd, contracts_cmd, crypto_cmd, devnet_cmd, serve_cmd
from clients.cli.db_cmd import register as register_db


def register(app: typer.Typer) -> None:
    crypto_cmd.register(app)
    devnet_cmd.register(app)
    contracts_cmd.register(app)
    serve_cmd.register(app)
    anchor_cmd.register(app)
    audit_cmd.register(app)
    register_db(app)
