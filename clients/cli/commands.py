"""Which command groups make up ``shancheng``.

The client commands are all here. The server's own commands (``serve``, ``run``,
``anchor-worker``, ``db``) live on the server's side, which never gets imported
from here: its entry point (``exchange.cli``) passes them in as ``server``, with
the ``start_local`` that lets ``demo`` start an exchange of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from clients.cli import (
    audit_cmd,
    buyer_cmd,
    certificate_cmd,
    config_cmd,
    contracts_cmd,
    crypto_cmd,
    devnet_cmd,
    operator_cmd,
    payouts_cmd,
    provider_cmd,
    quality_cmd,
    receipt_cmd,
    workflow_cmd,
)
from clients.cli.demo_cmd import register as register_demo

if TYPE_CHECKING:
    from clients.demo import LocalExchangeStarter


def register(
    app: typer.Typer,
    *,
    server: Callable[[typer.Typer], None] | None = None,
    start_local: LocalExchangeStarter | None = None,
) -> None:
    crypto_cmd.register(app)
    devnet_cmd.register(app)
    contracts_cmd.register(app)
    audit_cmd.register(app)
    receipt_cmd.register(audit_cmd.audit_app)
    if server is not None:
        server(app)  # here, so `shancheng --help` lists them where it always has
    config_cmd.register(app)
    quality_cmd.register_provider_commands(provider_cmd.provider_app)
    provider_cmd.register_group(app)
    buyer_cmd.register_group(app)
    operator_cmd.register_group(app)
    workflow_cmd.register(provider_cmd.provider_app, operator_cmd.operator_app)
    quality_cmd.register_group(app)
    certificate_cmd.register_group(app)
    payouts_cmd.register(
        withdrawing=(provider_cmd.provider_app, buyer_cmd.buyer_app),
        operators=operator_cmd.operator_app,
    )
    register_demo(app, start_local)
