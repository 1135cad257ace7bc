"""Shared fixtures: one real anvil devnet per test session."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from devnet.launcher import Devnet, DevnetConfig


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A running anvil on a free 127.0.0.1 port, stopped when the session ends.

    Tests share it: isolate by deploying a fresh contract per test rather than
    by restarting the node.
    """
    node = Devnet(DevnetConfig(state_dir=tmp_path_factory.mktemp("devnet"))).start()
    try:
        yield node
    finally:
        node.stop()


@contextmanager
def _live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on a free 127.0.0.1 port; yield its base URL.

    (Starlette's TestClient is deprecated with httpx; tests talk HTTP to a real
    server instead, or use ``httpx.ASGITransport`` for in-process calls.)
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="session")
def live_server() -> Any:
    """``with live_server(app) as base_url: ...`` runs ``app`` on a real uvicorn."""
    return _live_server
