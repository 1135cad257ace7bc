"""``shancheng run`` (what ``make run`` starts): everything up, then Ctrl-C stops everything."""

from __future__ import annotations

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


def _start(data_dir: Path, port: int, chain_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SHANCHENG_DATABASE_URL")
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clients.cli", "run", "--data-dir", str(data_dir),
             "--port", str(port), "--chain-port", str(chain_port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env,
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

    process = _start(tmp_path / "var", port, chain_port, log)
    health = _wait_healthy(url, process, log)
    chain = health["chain"]
    assert isinstance(chain, dict) and chain["registry_address"] == registry
    assert _interrupt(process) == 0
    assert "reused" in log.read_text()[len(first_output) :]
    assert operator_key.read_bytes() == first_key, "the dev operator key must be kept"
