"""The devnet launcher against the real anvil binary."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devnet.launcher import (
    DEVNET_CHAIN_ID,
    Devnet,
    DevnetConfig,
    DevnetError,
    chain_id_at,
    process_is_anvil,
    rpc_call,
)

REPO = Path(__file__).resolve().parents[2]


def _block_number(url: str) -> int:
    return int(str(rpc_call(url, "eth_blockNumber")), 16)


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_is_anvil(pid):
            return True
        time.sleep(0.05)
    return False


def test_start_answers_on_loopback_and_stop_leaves_no_process(tmp_path: Path) -> None:
    node = Devnet(DevnetConfig(state_dir=tmp_path)).start()
    pid, url = node.pid, node.rpc_url
    assert url.startswith("http://127.0.0.1:")
    assert chain_id_at(url) == DEVNET_CHAIN_ID
    assert node.is_running()
    node.stop()
    assert not process_is_anvil(pid)
    with pytest.raises(DevnetError):
        chain_id_at(url, timeout=0.5)
    node.stop()  # a second stop is harmless


def test_state_survives_a_restart(tmp_path: Path) -> None:
    config = DevnetConfig(state_dir=tmp_path, state_interval=3600)
    with Devnet(config) as node:
        for _ in range(4):
            rpc_call(node.rpc_url, "evm_mine")
        account = "0x000000000000000000000000000000000000dEaD"
        rpc_call(node.rpc_url, "anvil_setBalance", [account, hex(123456789)])
    # stop dumps state even though the interval never elapsed
    with Devnet(config) as node:
        assert node.state_note == "loaded state"
        assert _block_number(node.rpc_url) == 4
        assert (
            int(str(rpc_call(node.rpc_url, "eth_getBalance", [account, "latest"])), 16) == 123456789
        )


def test_truncated_state_is_replaced_by_the_last_good_backup(tmp_path: Path) -> None:
    config = DevnetConfig(state_dir=tmp_path)
    with Devnet(config) as node:
        rpc_call(node.rpc_url, "evm_mine")
        rpc_call(node.rpc_url, "evm_mine")
    assert config.backup_file.exists()
    good = config.state_file.read_bytes()
    config.state_file.write_bytes(good[: len(good) // 2])

    with Devnet(config) as node:
        assert "restored the last good backup" in node.state_note
        assert _block_number(node.rpc_url) == 2
    kept = list(tmp_path.glob("state.corrupt-*.json"))
    assert len(kept) == 1 and kept[0].read_bytes() == good[: len(good) // 2]


def test_damaged_state_without_backup_starts_a_fresh_chain(tmp_path: Path) -> None:
    config = DevnetConfig(state_dir=tmp_path)
    config.state_file.write_text('{"block": {"number": "0x')
    with Devnet(config) as node:
        assert "no good backup, fresh chain" in node.state_note
        assert _block_number(node.rpc_url) == 0


def test_start_fails_fast_with_the_log_tail_when_anvil_exits(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DevnetError, match="exited with code") as info:
            Devnet(DevnetConfig(state_dir=tmp_path, port=port, startup_timeout=30)).start()
        assert time.monotonic() - started < 10
    assert "log tail" in str(info.value)


_CHILD = """
import sys, time
from pathlib import Path
from devnet.launcher import Devnet, DevnetConfig
node = Devnet(DevnetConfig(state_dir=Path(sys.argv[1]))).start()
print(node.pid, flush=True)
time.sleep(600)
"""


def test_no_orphan_when_the_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert parent.stdout is not None
        anvil_pid = int(parent.stdout.readline())
        assert process_is_anvil(anvil_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(anvil_pid), f"anvil {anvil_pid} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clients.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_cli_up_status_down(tmp_path: Path) -> None:
    state = str(tmp_path)
    up = _cli("devnet", "up", "--state-dir", state, "--port", "0", "--json")
    assert up.returncode == 0, up.stderr
    facts = json.loads(up.stdout)
    try:
        assert facts["chain_id"] == DEVNET_CHAIN_ID
        again = _cli("devnet", "up", "--state-dir", state, "--port", "0", "--json")
        assert json.loads(again.stdout)["pid"] == facts["pid"]
        status = _cli("devnet", "status", "--state-dir", state, "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["rpc_url"] == facts["rpc_url"]
        down = _cli("devnet", "down", "--state-dir", state)
        assert down.returncode == 0, down.stderr
        assert _wait_gone(facts["pid"])
        stopped = _cli("devnet", "status", "--state-dir", state)
        assert stopped.returncode == 1 and "not running" in stopped.stdout
    finally:
        if process_is_anvil(facts["pid"]):
            os.kill(facts["pid"], signal.SIGKILL)
