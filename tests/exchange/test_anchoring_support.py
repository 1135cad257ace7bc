"""Helpers shared by the ``test_anchoring_*`` modules (no tests of its own).

Checkpoints are written straight into the ``checkpoint`` table: the worker
anchors (tree size, root) and never verifies the log's signature.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient, RegistryClient
from exchange.anchoring.models import AnchorRow
from exchange.anchoring.worker import AnchorWorker
from exchange.db import make_engine
from exchange.log.models import CheckpointRow
from exchange.log.testing import LogDatabase, isolated_database, migrated_sqlite
from ledger.sm3 import sm3

DEV_KEY = DEVNET_TEST_ACCOUNTS[0].private_key
T0_MS = 1_700_000_000_000


def root_of(tree_size: int, salt: bytes = b"") -> bytes:
    return sm3(b"checkpoint %d" % tree_size + salt)


class FakeClock:
    """Milliseconds that only move when the test says so."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


def sqlite_engine(tmp_path: Path) -> Engine:
    """An engine on a SQLite file in ``tmp_path`` migrated to head."""
    return make_engine(migrated_sqlite(tmp_path / "exchange.db"))


@contextmanager
def anchoring_database(backend: str, tmp_path: Path) -> Iterator[LogDatabase]:
    """A fresh database migrated to head: a SQLite file in ``tmp_path`` or, for
    ``postgresql``, a throw-away schema of TEST_POSTGRES_URL."""
    postgres = os.environ.get("TEST_POSTGRES_URL") if backend == "postgresql" else None
    assert backend == "sqlite" or postgres is not None
    with isolated_database(postgres, tmp_path) as db:
        yield db


def add_checkpoint(engine: Engine, tree_size: int, root: bytes | None = None) -> bytes:
    root = root_of(tree_size) if root is None else root
    with Session(engine) as session:
        session.add(
            CheckpointRow(
                tree_size=tree_size,
                root=root,
                timestamp=T0_MS,
                log_key_id="00" * 32,
                signature=b"not verified by the anchoring worker",
            )
        )
        session.commit()
    return root


def rows(engine: Engine) -> dict[int, AnchorRow]:
    with Session(engine) as session:
        return {row.tree_size: row for row in session.exec(select(AnchorRow))}


def row(engine: Engine, tree_size: int) -> AnchorRow:
    found = rows(engine).get(tree_size)
    assert found is not None, f"no anchor row for {tree_size}"
    return found


def chain_client(rpc_url: str) -> ChainClient:
    return ChainClient(rpc_url, DEV_KEY, poll_interval=0.02, receipt_timeout=30)


def fresh_registry(chain: ChainClient) -> RegistryClient:
    return chain.registry(chain.deploy_registry().address)


def anchored_sizes(registry: RegistryClient) -> list[int]:
    """Tree sizes of every ``Anchored`` event on the canonical chain, oldest first."""
    return [event.tree_size for event in registry.anchored_events(0)]


def mine(chain: ChainClient, blocks: int = 1) -> None:
    for _ in range(blocks):
        chain.rpc("evm_mine")


def make_worker(
    engine: Engine, chain: ChainClient, registry: RegistryClient, **options: Any
) -> AnchorWorker:
    defaults: dict[str, Any] = {
        "interval_s": 3600.0,
        "size_threshold": 1,
        "confirmations": 3,
        "receipt_wait_s": 10.0,
        "poll_s": 0.05,
        "clock_ms": FakeClock(),
    }
    return AnchorWorker(engine, chain, registry.address, **{**defaults, **options})


class Crash(BaseException):
    """Stands in for the process dying at a step (not an ``Exception``: nothing catches it)."""


def crash_at(step: str) -> Any:
    def hook(name: str, _tree_size: int) -> None:
        if name == step:
            raise Crash(step)

    return hook


@contextmanager
def manual_mining(chain: ChainClient) -> Iterator[None]:
    chain.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        chain.rpc("evm_setAutomine", [True])
