"""``shancheng run`` (what ``make run`` starts): everything up, then Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devnet.launcher import process_is_anvil

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(
    data_dir: Path, port: int, chain_port: int, log: Path, json_out: Path | None = None
) -> subprocess.Popen[bytes]:
    """``shancheng run`` with its output appended to ``log``; with ``json_out``, run with
    ``--json``: stdout (the startup map) goes there and only stderr to ``log``."""
    ignored = ("DATABASE_URL", "SHANCHENG_DATABASE_URL", "SHANCHENG_ANCHOR_INTERVAL_S")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    extra = [] if json_out is None else ["--json"]
    with log.open("ab") as out, (json_out or log).open("ab") as stdout:
        return subprocess.Popen(
            [sys.executable, "-m", "exchange.cli", "run", "--data-dir", str(data_dir),
             "--port", str(port), "--chain-port", str(chain_port), *extra],
            cwd=REPO, stdout=stdout if json_out else out,
            stderr=out if json_out else subprocess.STDOUT, env=env,
        )  # fmt: skip


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            response = httpx.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"exchange never became healthy:\n{log.read_text()}")


def _interrupt(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _anvil_pid(state_dir: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_is_anvil(int(entry.name)):
            cmdline = (entry / "cmdline").read_bytes()
            if str(state_dir).encode() in cmdline:
                return int(entry.name)
    raise AssertionError("no anvil for this state dir")


def test_run_serves_health_reuses_the_registry_and_stops_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    port, chain_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{port}"

    process = _start(tmp_path / "var", port, chain_port, log)
    health = _wait_healthy(url, process, log)
    chain = health["chain"]
    assert isinstance(chain, dict)
    assert chain["ok"] is True and chain["registry_deployed"] is True
    assert chain["rpc_url"] == f"http://127.0.0.1:{chain_port}"
    registry = chain["registry_address"]
    anvil = _anvil_pid(tmp_path / "var" / "devnet")
    assert _interrupt(process) == 0
    assert not process_is_anvil(anvil), "anvil outlived `shancheng run`"
    first_output = log.read_text()
    assert "AnchorRegistry" in first_output and "deployed now" in first_output
    assert "Traceback" not in first_output
    operator_key = tmp_path / "var" / "operator-key.pem"
    assert "Operator key" in first_output
    assert stat.S_IMODE(operator_key.stat().st_mode) == 0o600
    first_key = operator_key.read_bytes()

    startup = tmp_path / "startup.json"  # the second time with --json
    process = _start(tmp_path / "var", port, chain_port, log, json_out=startup)
    health = _wait_healthy(url, process, log)
    chain = health["chain"]
    assert isinstance(chain, dict) and chain["registry_address"] == registry
    assert _interrupt(process) == 0
    assert operator_key.read_bytes() == first_key, "the dev operator key must be kept"
    document = json.loads(startup.read_text())  # stdout held the map alone
    assert document["api"] == url and document["health"] == f"{url}/health"
    assert document["registry"] == {"address": registry, "reused": True}
    assert document["chain"]["rpc_url"] == f"http://127.0.0.1:{chain_port}"
    assert document["operator_key"] == str(operator_key)
    assert document["anchoring"]["interval_s"] == 10.0  # devnet: anchors within seconds
    second_output = log.read_text()[len(first_output) :]
    assert "Press Ctrl-C" in second_output
    assert '"event": "request"' in second_output and '"path": "/health"' in second_output
    assert "Traceback" not in second_output
