"""A local exchange on this machine: devnet, ``AnchorRegistry`` and the API.

Shared by ``shancheng run`` (which serves in the foreground until Ctrl-C) and
``shancheng demo`` (which starts its own exchange in a temporary directory
when none answers, and serves it from a thread while the story runs). One
place decides how the devnet is found or started, how the registry is
deployed or reused, and where the dev operator key lives, so the two commands
cannot drift apart. The demo lives in ``clients/``, which never imports the
server: :mod:`exchange.cli` hands it :func:`local_exchange` (a
:class:`clients.demo.LocalExchangeStarter`).

Everything started here is stopped when the context manager exits, also on
Ctrl-C or an error; anvil additionally dies with this process (PDEATHSIG, see
:mod:`devnet.launcher`), so even ``kill -9`` leaves no node behind.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devnet.launcher import Devnet, DevnetConfig

if TYPE_CHECKING:
    from exchange.settings import Settings
    from ledger.sm2 import SM2PrivateKey

__all__ = [
    "OPERATOR_KEY_FILENAME",
    "LocalChain",
    "LocalExchange",
    "dev_operator_key",
    "free_port",
    "local_chain",
    "local_exchange",
    "port_is_free",
    "serve_in_thread",
    "with_operator",
]

OPERATOR_KEY_FILENAME = "operator-key.pem"
"""The dev operator key ``shancheng run`` creates in its data directory (mode 0600)."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (another process may take it before we bind)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class LocalChain:
    """A devnet with a usable ``AnchorRegistry``."""

    node: Devnet
    registry_address: str
    registry_reused: bool
    started_here: bool
    """False when a detached ``shancheng devnet up`` node was reused (it keeps running)."""

    @property
    def rpc_url(self) -> str:
        return self.node.rpc_url


@contextmanager
def local_chain(
    state_dir: Path,
    *,
    port: int | None,
    block_time: float | None,
    on_port_taken: Callable[[int], None] | None = None,
) -> Iterator[LocalChain]:
    """The devnet under ``state_dir`` with the registry deployed (or reused).

    A detached node (``shancheng devnet up``) on that state directory is
    reused and left running; otherwise a node is started on ``port`` (a free
    one if ``port`` is ``None`` or taken: ``on_port_taken`` hears about it)
    and stopped on exit. ``block_time`` ``None`` mines a block per
    transaction. Raises :class:`devnet.launcher.DevnetError` and
    :class:`devnet.deploy.DeployError`.
    """
    from devnet.deploy import ensure_registry

    config = DevnetConfig(state_dir=state_dir, port=port, block_time=block_time)
    node = Devnet.attach(config)
    started_here = node is None
    if node is None:
        if port is not None and not port_is_free("127.0.0.1", port):
            if on_port_taken is not None:
                on_port_taken(port)
            config = replace(config, port=None)
        node = Devnet(config).start()
    try:
        deployment, reused = ensure_registry(node.rpc_url, state_dir / "deployment.json")
        yield LocalChain(node, deployment.registry_address, reused, started_here)
    finally:
        if started_here:
            node.stop()


def dev_operator_key(data_dir: Path) -> tuple[Path, SM2PrivateKey]:
    """The dev operator key in ``data_dir`` (generated on first use, mode 0600).

    A local exchange needs one operator to approve providers, review listings
    and credit deposits; ``shancheng run`` configures this key's public half
    and ``shancheng demo`` signs with it. Raises
    :class:`exchange.keys.LogKeyError` for an unreadable or non-private file.
    """
    from exchange.keys import load_or_create_key_file

    path = data_dir / OPERATOR_KEY_FILENAME
    return path, load_or_create_key_file(path, what="the dev operator key")


def with_operator(settings: Settings, operator: SM2PrivateKey) -> Settings:
    """``settings`` with ``operator``'s public key added to the configured operators."""
    pem = operator.public_key().to_pem().decode("ascii")
    if pem in settings.operator_public_keys:
        return settings
    return settings.model_copy(
        update={"operator_public_keys": [*settings.operator_public_keys, pem]}
    )


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn from a daemon thread; yield its base URL; stop on exit.

    The thread installs no signal handlers, so Ctrl-C reaches the caller,
    whose ``finally`` ends up here and shuts the server down in order (the
    app's background services stop with its lifespan).
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="shancheng-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the exchange API did not start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the exchange API did not start within 60 s")
            time.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass(frozen=True)
class LocalExchange:
    """An exchange :func:`local_exchange` started: where to reach it and its chain."""

    url: str
    rpc_url: str
    registry_address: str
    data_dir: Path
    settings: Settings


@contextmanager
def local_exchange(
    data_dir: Path,
    *,
    operator: SM2PrivateKey,
    block_time: float | None = 1.0,
    **settings: Any,
) -> Iterator[LocalExchange]:
    """Devnet (free port) + registry + the API (free port, in a thread) under ``data_dir``.

    ``operator`` is configured as the exchange's operator; ``settings`` are
    further :class:`exchange.settings.Settings` fields (anchoring intervals, a
    ``database_url``, …). Everything is stopped on exit. Raises what
    :func:`local_chain` raises.
    """
    from exchange.app import create_app
    from exchange.settings import Settings

    with local_chain(data_dir / "devnet", port=None, block_time=block_time) as chain:
        config = with_operator(
            Settings(
                data_dir=data_dir,
                rpc_url=chain.rpc_url,
                registry_address=chain.registry_address,
                **settings,
            ),
            operator,
        )
        with serve_in_thread(create_app(config)) as url:
            yield LocalExchange(url, chain.rpc_url, chain.registry_address, data_dir, config)
