"""The ``shancheng`` command line.

Each command group lives in its own module and registers itself on an app
(:mod:`clients.cli.commands`). :data:`app` holds the client commands alone; the
installed ``shancheng`` is assembled on the server's side (``exchange.cli``),
which adds the server's commands to :func:`new_app` the same way, so this
package never imports the server. Errors the user can act on are
:class:`CLIError`: printed as one line with a non-zero exit code; a traceback
only with ``--debug``.
"""

from __future__ import annotations

import sys

import typer

from clients.cli import _common
from clients.cli._common import CLIError

_DEBUG = {"on": False}
_GROUPS_REGISTERED = {"done": False}


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _DEBUG["on"] = debug


def new_app() -> typer.Typer:
    """A ``shancheng`` app with no commands yet: its name, help and ``--debug``."""
    created = typer.Typer(
        name="shancheng",
        help="Shancheng (山城) Data Exchange: verifiable data trading, SM2/SM3/SM4 + an EVM "
        "anchor.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    created.callback()(_root)
    return created


app = new_app()


def _register_groups() -> None:
    """Add every client command group to :data:`app` once (tests call this too)."""
    if _GROUPS_REGISTERED["done"]:
        return
    # Imported here so each module can import this package without a cycle.
    from clients.cli import commands

    commands.register(app)
    _GROUPS_REGISTERED["done"] = True


def run_app(target: typer.Typer) -> None:
    """Run ``target`` as the command line: a :class:`CLIError` becomes one line on stderr
    and its exit code (the traceback with ``--debug``)."""
    try:
        target()
    except CLIError as exc:
        if _DEBUG["on"]:
            raise
        _common.stderr.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


def main() -> None:
    """The client commands alone (``python -m clients.cli``)."""
    _register_groups()
    run_app(app)
