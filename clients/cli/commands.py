"""Which command groups make up ``shancheng``."""

from __future__ import annotations

import typer

from clients.cli import (
    anchor_cmd,
    audit_cmd,
    buyer_cmd,
    config_cmd,
    contracts_cmd,
    crypto_cmd,
    devnet_cmd,
    operator_cmd,
    provider_cmd,
    serve_cmd,
)
from clients.cli.db_cmd import register as register_db
from clients.cli.demo_cmd import register as register_demo


def register(app: typer.Typer) -> None:
    crypto_cmd.register(app)
    devnet_cmd.register(app)
    contracts_cmd.register(app)
    serve_cmd.register(app)
    anchor_cmd.register(app)
    audit_cmd.register(app)
    register_db(app)
    config_cmd.register(app)
    provider_cmd.register_group(app)
    buyer_cmd.register_group(app)
    operator_cmd.register_group(app)
    register_demo(app)
