"""Helpers shared by the CLI tests (no tests of its own): run ``shancheng`` in-process
as ``main()`` would, or as a real subprocess when stdout/stderr and exit codes matter
byte for byte. ``shancheng`` is the installed command: the client commands together
with the server's, as ``exchange.cli`` assembles them (the client commands alone are
``clients.cli``, see test_layering.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

import clients.cli
import exchange.cli
from clients.cli._common import CLIError

REPO = Path(__file__).resolve().parents[2]

# The exchange's test helpers (running_exchange, publish, deposit …) live beside the
# exchange tests; pytest puts that directory on sys.path only when it collects there.
_EXCHANGE_TESTS = str(REPO / "tests" / "exchange")
if _EXCHANGE_TESTS not in sys.path:
    sys.path.append(_EXCHANGE_TESTS)


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    message: str | None  # the CLIError message main() would print, if any


SHANCHENG = exchange.cli.app
"""The whole ``shancheng`` app, every group registered."""


def make_runner() -> CliRunner:
    """A CliRunner for the whole ``shancheng`` app."""
    return CliRunner()


def invoke(cli: CliRunner, *args: str | Path) -> Outcome:
    """Run the app as ``main()`` would, mapping a CLIError to its exit code; any other
    exception would be a traceback for the user, so it fails the test."""
    clients.cli._DEBUG["on"] = False
    result = cli.invoke(SHANCHENG, [str(a) for a in args])
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        if not isinstance(exc, CLIError):
            raise exc
        return Outcome(exc.exit_code, result.stdout, result.stderr, exc.message)
    return Outcome(result.exit_code, result.stdout, result.stderr, None)


def run_shancheng(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m exchange.cli ARGS`` (the ``shancheng`` script) in a subprocess,
    SHANCHENG_* variables removed (unless given in ``env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean,
        timeout=timeout,
        check=False,
    )
