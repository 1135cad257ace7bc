"""The ``shancheng`` command: the client commands plus the server's own.

``clients/`` never imports the server, so the one command is assembled here, on
the server's side (the ``[project.scripts]`` entry point): the client commands
of :mod:`clients.cli.commands`, the server's commands (``serve``, ``run``,
``anchor-worker``, ``db``) and, for ``shancheng demo``, the starter of a local
exchange (:func:`exchange.local_exchange.local_exchange`). ``python -m
clients.cli`` is the client commands alone.
"""

from __future__ import annotations

import typer

from clients.cli import commands, new_app, run_app
from exchange.cli import anchor, db, run, serve
from exchange.local_exchange import local_exchange


def register_server_commands(app: typer.Typer) -> None:
    serve.register(app)
    run.register(app)
    anchor.register(app)
    db.register(app)


def build_app() -> typer.Typer:
    """The whole ``shancheng`` command line."""
    app = new_app()
    commands.register(app, server=register_server_commands, start_local=local_exchange)
    return app


app = build_app()


def main() -> None:
    run_app(app)
