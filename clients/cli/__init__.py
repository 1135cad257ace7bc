"""The ``shancheng`` command line.

Each command group lives in its own module and registers itself on :data:`app`.
Errors the user can act on are :class:`CLIError`: printed as one line with a
non-zero exit code; a traceback only with ``--debug``.
"""

from __future__ import annotations

import sys

import typer

from clients.cli import _common
from clients.cli._common import CLIError

app = typer.Typer(
    name="shancheng",
    help="Shancheng (山城) Data Exchange: verifiable data trading, SM2/SM3/SM4 + an EVM anchor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_DEBUG = {"on": False}
_GROUPS_REGISTERED = {"done": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _DEBUG["on"] = debug


def _register_groups() -> None:
    """Add every command group to :data:`app` once (tests call this too)."""
    if _GROUPS_REGISTERED["done"]:
        return
    # Imported here so each module can import `app` without a cycle.
    from clients.cli import commands

    commands.register(app)
    _GROUPS_REGISTERED["done"] = True


def main() -> None:
    _register_groups()
    try:
        app()
    except CLIError as exc:
        if _DEBUG["on"]:
            raise
        _common.stderr.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
