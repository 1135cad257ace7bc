"""Start, watch and stop a local anvil devnet.

The anvil binary comes from the pinned npm package ``@foundry-rs/anvil`` (its
platform package carries the real executable). We run that executable directly:
the npm ``.bin`` wrapper is a node script that adds start-up latency and does
not forward signals faithfully.

Two ways to run a node:

* attached (:meth:`Devnet.start`): the node belongs to this Python process. On
  Linux the kernel sends it SIGTERM if this process dies, so even ``kill -9`` of
  the parent leaves no orphan.
* detached (:meth:`Devnet.start` with ``detached=True``, used by
  ``shancheng devnet up``): the node outlives the command; a pid file in the
  state directory lets ``devnet down`` / ``devnet status`` find it again.

Chain state persists in ``<state_dir>/state.json`` through anvil's ``--state``
and ``--state-interval``. A truncated state file makes anvil refuse to start, so
the file is validated first and a copy of the last good one is kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

DEVNET_CHAIN_ID = 31337
DEVNET_DIR = Path(__file__).resolve().parent
_LISTENING = re.compile(rb"Listening on ([0-9.]+):(\d+)")
_PR_SET_PDEATHSIG = 1


class DevnetError(RuntimeError):
    """The devnet could not be started, reached or stopped."""


@dataclass(frozen=True)
class DevnetConfig:
    state_dir: Path
    port: int | None = None
    """TCP port on 127.0.0.1; ``None`` lets anvil pick a free one."""
    chain_id: int = DEVNET_CHAIN_ID
    state_interval: int = 1
    """Seconds between state dumps; a clean stop always dumps as well."""
    block_time: float | None = None
    """Seconds between blocks; ``None`` mines a block per transaction."""
    startup_timeout: float = 20.0
    stop_grace: float = 5.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def backup_file(self) -> Path:
        return self.state_dir / "state.json.bak"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "anvil.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "anvil.pid"


def anvil_binary() -> Path:
    """Path of the real anvil executable installed by ``npm ci`` in ``devnet/``."""
    override = os.environ.get("SHANCHENG_ANVIL_BIN")
    if override:
        return Path(override)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    binary = (
        DEVNET_DIR / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    )
    if not binary.is_file():
        raise DevnetError(
            f"anvil not found at {binary}; run `npm ci --ignore-scripts` in {DEVNET_DIR} "
            "(or `make setup`)"
        )
    return binary


def rpc_call(
    url: str, method: str, params: list[object] | None = None, timeout: float = 2.0
) -> object:
    """One JSON-RPC call; raises :class:`DevnetError` on transport or RPC errors."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    try:
        response = httpx.post(url, json=body, timeout=timeout)
        response.raise_for_status()
        payload = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DevnetError(f"{method} at {url} failed: {exc}") from exc
    if "error" in payload:
        raise DevnetError(f"{method} at {url} returned an error: {payload['error']}")
    return payload.get("result")


def chain_id_at(url: str, timeout: float = 2.0) -> int:
    result = rpc_call(url, "eth_chainId", timeout=timeout)
    if not isinstance(result, str):
        raise DevnetError(f"eth_chainId at {url} returned {result!r}")
    return int(result, 16)


def _state_file_is_valid(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "block" in state and "accounts" in state


def prepare_state(config: DevnetConfig) -> str:
    """Make sure anvil will accept the state file; return what was done, for the log.

    A state file that does not parse is moved aside (never deleted) and the last
    good backup, if any, takes its place.
    """
    config.state_dir.mkdir(parents=True, exist_ok=True)
    state, backup = config.state_file, config.backup_file
    if not state.exists():
        if backup.exists() and _state_file_is_valid(backup):
            shutil.copy2(backup, state)
            return "restored state from backup (state file was missing)"
        return "fresh chain"
    if _state_file_is_valid(state):
        shutil.copy2(state, backup)
        return "loaded state"
    corrupt = state.with_name(f"state.corrupt-{int(time.time())}.json")
    state.rename(corrupt)
    if backup.exists() and _state_file_is_valid(backup):
        shutil.copy2(backup, state)
        return f"state file was damaged (kept as {corrupt.name}); restored the last good backup"
    return f"state file was damaged (kept as {corrupt.name}); no good backup, fresh chain"


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """For ``preexec_fn``: the child gets SIGTERM when the process that started it dies
    (Linux ``PR_SET_PDEATHSIG``), so even ``kill -9`` of the parent leaves no orphan."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent may already have died between fork and prctl.
    if os.getppid() == 1:
        os._exit(1)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def process_is_anvil(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"anvil" in cmdline.split(b"\0", 1)[0]


class Devnet:
    """One anvil process bound to 127.0.0.1."""

    def __init__(self, config: DevnetConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._port: int | None = None
        self.state_note = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, detached: bool = False) -> Devnet:
        if self._pid is not None:
            raise DevnetError("devnet already started")
        config = self.config
        self.state_note = prepare_state(config)
        port = 0 if config.port is None else config.port
        args = [
            str(anvil_binary()),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--chain-id", str(config.chain_id),
            "--state", str(config.state_file),
            "--state-interval", str(config.state_interval),
            *config.extra_args,
        ]  # fmt: skip
        if config.block_time is not None:
            args += ["--block-time", str(config.block_time)]
        log_offset = config.log_file.stat().st_size if config.log_file.exists() else 0
        with config.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches our handler, which
                # then stops anvil in order, instead of killing it mid-dump.
                start_new_session=True,
                preexec_fn=None if detached else die_with_parent,
                close_fds=True,
            )
        self._pid = self._process.pid
        try:
            self._port = self._wait_ready(log_offset)
        except BaseException:
            self.stop()
            raise
        if detached:
            config.pid_file.write_text(f"{self._pid} {self._port}\n")
        return self

    def _wait_ready(self, log_offset: int) -> int:
        config = self.config
        deadline = time.monotonic() + config.startup_timeout
        port = config.port
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise DevnetError(
                    f"anvil exited with code {self._process.returncode} during start-up; "
                    f"log tail ({config.log_file}):\n{_log_tail(config.log_file)}"
                )
            if port is None:
                port = self._port_from_log(log_offset)
            if port is not None:
                url = f"http://127.0.0.1:{port}"
                with contextlib.suppress(DevnetError):
                    chain_id = chain_id_at(url, timeout=0.5)
                    if chain_id != config.chain_id:
                        raise DevnetError(
                            f"{url} answers chain id {chain_id}, expected {config.chain_id}"
                        )
                    return port
            time.sleep(0.05)
        raise DevnetError(
            f"anvil did not answer eth_chainId within {config.startup_timeout:.0f}s; "
            f"log tail:\n{_log_tail(config.log_file)}"
        )

    def _port_from_log(self, offset: int) -> int | None:
        try:
            with self.config.log_file.open("rb") as handle:
                handle.seek(offset)
                match = _LISTENING.search(handle.read())
        except OSError:
            return None
        return int(match.group(2)) if match else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period. Safe to call twice."""
        pid, process = self._pid, self._process
        self._pid = self._process = None
        if pid is None:
            return
        _terminate(pid, process, self.config.stop_grace)
        self.config.pid_file.unlink(missing_ok=True)
        if _state_file_is_valid(self.config.state_file):
            shutil.copy2(self.config.state_file, self.config.backup_file)

    # -- attach to a detached node ---------------------------------------------------------

    @classmethod
    def attach(cls, config: DevnetConfig) -> Devnet | None:
        """The detached node recorded in the pid file, if it is still running."""
        try:
            pid_text, port_text = config.pid_file.read_text().split()
            pid, port = int(pid_text), int(port_text)
        except (OSError, ValueError):
            return None
        if not process_is_anvil(pid):
            config.pid_file.unlink(missing_ok=True)
            return None
        node = cls(config)
        node._pid, node._port = pid, port
        return node

    # -- facts -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise DevnetError("devnet not running")
        return self._pid

    @property
    def port(self) -> int:
        if self._port is None:
            raise DevnetError("devnet not running")
        return self._port

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chain_id(self) -> int:
        return self.config.chain_id

    def is_running(self) -> bool:
        if self._pid is None:
            return False
        if self._process is not None:
            return self._process.poll() is None
        return process_is_anvil(self._pid)

    def __enter__(self) -> Devnet:
        if self._pid is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate(pid: int, process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Stop ``pid``: SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _reap_or_gone(pid, process):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if _reap_or_gone(pid, process):
            return
        time.sleep(0.05)
    raise DevnetError(f"anvil (pid {pid}) did not exit after SIGKILL")


def _reap_or_gone(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is not None
    return not process_is_anvil(pid)
