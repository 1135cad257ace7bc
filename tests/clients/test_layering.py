"""``clients/`` never imports the server (``exchange``): the dependency runs one way,
``clients → ledger`` (and ``contracts`` for the auditor's chain reads). The server's
commands and the demo's local exchange come from the server's side (``exchange.cli``),
so the client commands alone still make a working ``shancheng``."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_support import REPO
from typer.testing import CliRunner

import clients.cli
from clients.cli._common import CLIError

FORBIDDEN = "exchange"
IMPORTERS = {"import_module", "__import__"}  # importlib.import_module, __import__


def _forbidden(module: str | None) -> bool:
    return module is not None and (module == FORBIDDEN or module.startswith(FORBIDDEN + "."))


def imports_of_the_server(source: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import of ``exchange`` in ``source``: ``import``
    and ``from … import`` statements at any depth (inside functions, ``if
    TYPE_CHECKING:``, ``try:``), and ``import_module``/``__import__`` calls with a
    literal name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden(alias.name):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and _forbidden(node.module):
                yield node.lineno, str(node.module)
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else None
            if isinstance(function, ast.Name):
                name = function.id
            first = node.args[0]
            if (
                name in IMPORTERS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _forbidden(first.value)
            ):
                yield node.lineno, first.value


def server_imports_under(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, module in imports_of_the_server(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("room", ["clients", "agent"])
def test_no_module_under_clients_or_the_agent_imports_the_exchange(room: str) -> None:
    """The provider agent runs on the provider's machine: it talks to the exchange
    through the SDK only, as any client does."""
    assert server_imports_under(REPO / room) == []


@pytest.mark.parametrize(
    "source",
    [
        "import exchange",
        "import exchange.settings as s",
        "import os, exchange.db",
        "from exchange import migrations",
        "from exchange.app import create_app",
        "def f():\n    from exchange.keys import load_or_create_key_file",
        "if TYPE_CHECKING:\n    from exchange.settings import Settings",
        "try:\n    import exchange.app\nexcept ImportError:\n    pass",
        "import importlib\nimportlib.import_module('exchange.app')",
        "from importlib import import_module\nimport_module('exchange')",
        "__import__('exchange.settings')",
    ],
)
def test_every_way_of_importing_the_server_is_caught(source: str) -> None:
    assert [module for _, module in imports_of_the_server(source)], source


@pytest.mark.parametrize(
    "source",
    [
        "import exchanges",
        "from exchange_rates import x",
        "from .exchange import local",  # relative: a module inside clients
        "from clients.sdk import ExchangeClient",
        "importlib.import_module(name)",
        "text = 'from exchange import app'",
    ],
)
def test_lookalikes_are_not_imports_of_the_server(source: str) -> None:
    assert list(imports_of_the_server(source)) == [], source


def test_the_client_commands_load_nothing_of_the_server() -> None:
    """Every client command module imported and registered, with help rendered: no
    ``exchange`` module was loaded (what a client-only install relies on)."""
    probe = textwrap.dedent(
        """
        import sys
        from typer.testing import CliRunner
        import clients.cli
        clients.cli._register_groups()
        for args in (["--help"], ["demo", "--help"], ["audit", "--help"]):
            assert CliRunner().invoke(clients.cli.app, args).exit_code == 0, args
        loaded = sorted(m for m in sys.modules if m == "exchange" or m.startswith("exchange."))
        print(loaded)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_client_commands_alone_have_no_server_commands() -> None:
    clients.cli._register_groups()
    names = {c.name for c in clients.cli.app.registered_commands}
    names |= {g.name for g in clients.cli.app.registered_groups}
    assert {"sm3", "audit", "buyer", "demo"} <= names
    assert names.isdisjoint({"serve", "run", "anchor-worker", "db"})


def test_without_a_local_exchange_the_demo_needs_a_running_one(
    closed_url: str, tmp_path: Path
) -> None:
    """The client-only ``demo`` cannot start an exchange of its own: one line, exit 1."""
    clients.cli._register_groups()
    clients.cli._DEBUG["on"] = False
    result = CliRunner().invoke(
        clients.cli.app, ["demo", "--exchange", closed_url, "--work-dir", str(tmp_path)]
    )
    error = result.exception
    assert isinstance(error, CLIError), result.output
    assert error.exit_code == 1
    assert error.message == (
        f"demo failed at step exchange: no exchange answers at {closed_url}, and this "
        "command cannot start one; start one with `shancheng run` or pass --exchange"
    )
    assert not (tmp_path / "exchange").exists()


@pytest.fixture
def closed_url() -> str:
    """A URL nothing listens on (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
