"""The server's commands of ``shancheng`` (``serve``, ``run``, ``anchor-worker``, ``db``;
:mod:`exchange.cli`): their JSON documents, one-line errors and exit codes, in-process
and as real subprocesses. ``run`` end to end is tests/test_run_command.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ledger.sm2 import SM2PrivateKey

# The CLI test helpers (invoke, run_shancheng …) live beside the client tests; pytest
# puts that directory on sys.path only when it collects there.
_CLIENT_TESTS = str(Path(__file__).resolve().parents[1] / "clients")
if _CLIENT_TESTS not in sys.path:
    sys.path.append(_CLIENT_TESTS)

from test_cli_support import REPO, invoke, make_runner, run_shancheng  # noqa: E402


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    return make_runner()


@pytest.fixture(scope="module")
def closed_url() -> str:
    """A URL nothing listens on (a port that was free a moment ago)."""
    return f"http://127.0.0.1:{_free_port()}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _document(result: Any) -> Any:
    """The one JSON document on stdout (fails on anything else there)."""
    assert result.exit_code == 0, result
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- db


def test_db_upgrade_and_current_json(cli: CliRunner, tmp_path: Path) -> None:
    from exchange import migrations

    url = f"sqlite:///{tmp_path / 'x.db'}"
    head = migrations.head()
    before = _document(invoke(cli, "db", "current", "--database-url", url, "--json"))
    assert before == {"database": url, "revision": None, "head": head, "up_to_date": False}
    upgraded = _document(invoke(cli, "db", "upgrade", "--database-url", url, "--json"))
    assert upgraded == {
        "database": url,
        "before": None,
        "after": head,
        "changed": True,
        "head": head,
    }
    again = _document(invoke(cli, "db", "upgrade", "--database-url", url, "--json"))
    assert again["changed"] is False and again["before"] == again["after"] == head
    after = _document(invoke(cli, "db", "current", "--database-url", url, "--json"))
    assert after == {"database": url, "revision": head, "head": head, "up_to_date": True}
    bad = invoke(cli, "db", "current", "--database-url", "nosuchdb://x", "--json")
    assert bad.exit_code == 2 and bad.stdout == ""


def test_db_json_redacts_the_password(cli: CliRunner) -> None:
    url = "postgresql://user:hunter2@127.0.0.1:1/none"
    failed = invoke(cli, "db", "current", "--database-url", url, "--json")
    assert failed.exit_code != 0 and failed.stdout == ""
    assert "hunter2" not in (failed.message or "")


# --------------------------------------------------------------------------- anchor-worker


def test_anchor_worker_once_json_is_one_line_report(tmp_path: Path, closed_url: str) -> None:
    done = run_shancheng(
        "anchor-worker", "--data-dir", tmp_path, "--rpc-url", closed_url,
        "--registry", "0x5FbDB2315678afecb367f032d93F642f64180aa3", "--once", "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the chain is down: the pass is not ok
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    report = json.loads(lines[0])
    assert report["ok"] is False and report["chain_available"] is False
    assert report["created"] == [] and report["conflicts"] == []
    assert "anchoring worker active" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- serve, run


def test_serve_json_prints_only_the_startup_map_on_stdout(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}
    env.pop("DATABASE_URL", None)
    env["SHANCHENG_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "serve", "--port", str(port), "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve never became healthy"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert json.loads(out) == {  # the /health request was logged to stderr, not here
        "api": url,
        "explorer": f"{url}/",
        "docs": f"{url}/docs",
        "health": f"{url}/health",
        "database": f"sqlite:///{tmp_path / 'data' / 'exchange.db'}",
        "rpc_url": None,
        "registry_address": None,
    }
    lines = [json.loads(line) for line in err.splitlines()]  # logs: JSON lines on stderr
    assert any(
        line["event"] == "request" and line["path"] == "/health" and line["status"] == 200
        for line in lines
    )
    assert "Traceback" not in err


def test_run_names_the_operator_key_in_its_errors(cli: CliRunner, tmp_path: Path) -> None:
    from exchange.local_exchange import OPERATOR_KEY_FILENAME

    key = tmp_path / OPERATOR_KEY_FILENAME
    key.write_bytes(SM2PrivateKey.generate().to_pem())
    key.chmod(0o644)
    port = str(_free_port())
    result = invoke(cli, "run", "--data-dir", tmp_path, "--port", port, "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert (result.message or "").startswith(f"the dev operator key {key} has mode 0644")
    assert "log key" not in (result.message or "")
