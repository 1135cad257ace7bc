"""One active anchoring worker per database: file lock (SQLite), advisory lock (PostgreSQL),
the ``shancheng anchor-worker`` process, and the worker inside the API process."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session
from test_anchoring_support import (
    add_checkpoint,
    anchored_sizes,
    chain_client,
    fresh_registry,
    make_worker,
    row,
    rows,
    sqlite_engine,
)

from contracts.chain import DEVNET_TEST_ACCOUNTS, RegistryClient
from devnet.launcher import Devnet, DevnetConfig
from exchange import migrations
from exchange.anchoring.lock import (
    AdvisoryWorkerLock,
    FileWorkerLock,
    LocalWorkerLock,
    LockLostError,
    worker_lock,
)
from exchange.anchoring.models import AnchorState
from exchange.db import make_engine
from exchange.log.locking import LogBusyError, LogLock, exclusive_transaction
from exchange.log.testing import postgres_schema
from exchange.settings import Settings

REPO = Path(__file__).resolve().parents[2]


# -- SQLite: a file lock next to the database ----------------------------------------------


def test_the_file_lock_admits_one_holder(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    first, second = worker_lock(engine), worker_lock(engine)
    assert isinstance(first, FileWorkerLock)
    assert first.path == (tmp_path / "exchange.db.anchor-worker.lock").resolve()
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
        assert not second.acquire(wait=True, poll_s=0.01, stop=_set_event())
    finally:
        first.release()
    assert second.try_acquire()
    second.release()


def test_an_in_memory_database_gets_a_process_local_lock() -> None:
    engine = make_engine("sqlite://")
    first, second = worker_lock(engine), worker_lock(engine)
    assert isinstance(first, LocalWorkerLock)
    assert first.try_acquire() and first.try_acquire()  # re-entrant for its holder
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


# -- the worker process --------------------------------------------------------------------


class Worker:
    """A ``shancheng anchor-worker`` process whose output lines the test can wait for."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exchange.cli", "anchor-worker", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.pumps = [
            threading.Thread(target=self._pump, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for pump in self.pumps:
            pump.start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.lines.put(line)

    def wait_for(self, fragment: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"{fragment!r} never printed; output:\n{''.join(self.seen)}")

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        for pump in self.pumps:  # the output is complete once both pipes hit EOF
            pump.join(timeout)
        return code

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.finish()
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.finish()


@pytest.fixture
def spawn() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


@pytest.fixture
def setup(tmp_path: Path, devnet: Devnet) -> tuple[Engine, RegistryClient, list[str]]:
    engine = sqlite_engine(tmp_path)
    registry = fresh_registry(chain_client(devnet.rpc_url))
    args = [
        "--database-url", str(engine.url), "--rpc-url", devnet.rpc_url,
        "--registry", registry.address, "--poll", "0.05", "--interval", "0",
        "--confirmations", "1",
    ]  # fmt: skip
    return engine, registry, args


@pytest.mark.chain
def test_a_second_worker_process_is_refused_then_waits_and_takes_over(
    setup: tuple[Engine, RegistryClient, list[str]], spawn: list[Worker]
) -> None:
    engine, registry, args = setup
    first = Worker(args, _env())
    spawn.append(first)
    first.wait_for("anchoring worker active")

    second = Worker(args, _env())
    spawn.append(second)
    assert second.finish() == 3
    assert "another anchoring worker is active" in second.output()
    assert "--wait" in second.output()

    waiting = Worker([*args, "--wait"], _env())
    spawn.append(waiting)
    waiting.wait_for("waiting for the active anchoring worker")
    add_checkpoint(engine, 3)
    assert first.stop() == 0
    assert "anchoring worker stopped" in first.output()
    waiting.wait_for("anchoring worker active")
    deadline = time.monotonic() + 60
    while rows(engine).get(3) is None or row(engine, 3).state != AnchorState.FINAL:
        assert time.monotonic() < deadline, waiting.output()
        time.sleep(0.05)
    assert waiting.stop() == 0
    assert anchored_sizes(registry) == [3]


@pytest.mark.chain
def test_a_single_pass_prints_its_report(
    setup: tuple[Engine, RegistryClient, list[str]], spawn: list[Worker]
) -> None:
    engine, registry, args = setup
    add_checkpoint(engine, 6)
    once = Worker([*args, "--once"], _env())
    spawn.append(once)
    assert once.finish() == 0, once.output()
    assert "anchored [6]" in once.output()
    assert anchored_sizes(registry) == [6]


def test_the_worker_needs_a_chain(tmp_path: Path, spawn: list[Worker]) -> None:
    worker = Worker(["--data-dir", str(tmp_path)], _env())
    spawn.append(worker)
    assert worker.finish() == 2
    assert "--rpc-url and --registry" in worker.output()


@pytest.mark.chain
def test_off_the_devnet_a_real_key_is_required(tmp_path: Path, spawn: list[Worker]) -> None:
    with Devnet(DevnetConfig(state_dir=tmp_path / "chain", chain_id=1337)) as other_chain:
        args = [
            "--data-dir", str(tmp_path), "--rpc-url", other_chain.rpc_url,
            "--registry", DEVNET_TEST_ACCOUNTS[3].address,
        ]  # fmt: skip
        no_key = Worker(args, _env())
        spawn.append(no_key)
        assert no_key.finish() == 2
        assert "chain 1337 is not the devnet: configure a private key" in no_key.output()

        test_key = Worker(args, _env(SHANCHENG_ANCHOR_KEY=DEVNET_TEST_ACCOUNTS[0].private_key))
        spawn.append(test_key)
        assert test_key.finish() == 2
        assert "refusing the public anvil TEST key" in test_key.output()


# -- inside the API process ----------------------------------------------------------------


def _app_settings(tmp_path: Path, devnet: Devnet, registry: RegistryClient) -> Settings:
    return Settings(
        data_dir=tmp_path,
        rpc_url=devnet.rpc_url,
        registry_address=registry.address,
        anchor_interval_s=0,
        anchor_confirmations=1,
        anchor_poll_s=0.05,
        sequencer_enabled=False,  # checkpoints are written by the test
    )


@pytest.mark.chain
def test_the_api_process_runs_the_worker(tmp_path: Path, devnet: Devnet) -> None:
    from exchange.app import create_app

    registry = fresh_registry(chain_client(devnet.rpc_url))
    settings = _app_settings(tmp_path, devnet, registry)
    app = create_app(settings)
    engine = make_engine(settings.resolved_database_url)

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            assert app.state.anchoring is not None
            add_checkpoint(engine, 12)
            deadline = time.monotonic() + 60
            while rows(engine).get(12) is None or row(engine, 12).state != AnchorState.FINAL:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert not app.state.anchoring.worker.running

    asyncio.run(serve())
    # The lifespan released the lock on shutdown.
    lock = worker_lock(engine)
    assert lock.try_acquire()
    lock.release()
    assert anchored_sizes(registry) == [12]


@pytest.mark.chain
def test_the_api_process_steps_aside_when_a_worker_holds_the_lock(
    tmp_path: Path, devnet: Devnet, caplog: pytest.LogCaptureFixture
) -> None:
    from exchange.app import create_app

    registry = fresh_registry(chain_client(devnet.rpc_url))
    settings = _app_settings(tmp_path, devnet, registry)
    app = create_app(settings)
    held = worker_lock(make_engine(settings.resolved_database_url))
    assert held.try_acquire()

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            assert app.state.anchoring is None

    try:
        with caplog.at_level("WARNING", logger="shancheng.anchoring"):
            asyncio.run(serve())
    finally:
        held.release()
    assert "this process runs without its own" in caplog.text


def test_no_chain_configured_no_worker(tmp_path: Path) -> None:
    from exchange.app import create_app

    app = create_app(Settings(data_dir=tmp_path, sequencer_enabled=False))

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            assert app.state.anchoring is None

    asyncio.run(serve())


# -- PostgreSQL: a session-level advisory lock ---------------------------------------------


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """An engine on a fresh schema of ``TEST_POSTGRES_URL`` (dropped afterwards)."""
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with postgres_schema(url, "anchor_test_") as schema_url:
        engine = make_engine(schema_url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_the_advisory_lock_admits_one_holder(pg_engine: Engine) -> None:
    first, second = worker_lock(pg_engine), worker_lock(pg_engine)
    assert isinstance(first, AdvisoryWorkerLock)
    assert first.try_acquire()
    try:
        first.ensure_held()
        assert not second.try_acquire()
    finally:
        first.release()
    assert second.try_acquire()
    second.release()


@pytest.fixture
def other_pg_engine(pg_engine: Engine) -> Iterator[Engine]:
    """An engine on a second fresh schema of the same database as ``pg_engine``."""
    url = os.environ["TEST_POSTGRES_URL"]
    with postgres_schema(url, "anchor_other_") as schema_url:
        engine = make_engine(schema_url)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_exchanges_in_two_schemas_each_elect_their_own_worker(
    pg_engine: Engine, other_pg_engine: Engine
) -> None:
    """Advisory locks belong to the whole database: the key includes the schema."""
    here, there, also_here = (
        worker_lock(pg_engine),
        worker_lock(other_pg_engine),
        worker_lock(pg_engine),
    )
    assert here.try_acquire()
    try:
        assert there.try_acquire()
        there.release()
        assert not also_here.try_acquire()
    finally:
        here.release()


@pytest.mark.postgres
def test_the_log_lock_of_one_schema_does_not_hold_up_another(
    pg_engine: Engine, other_pg_engine: Engine
) -> None:
    for engine in (pg_engine, other_pg_engine):
        migrations.upgrade(engine)
    with Session(pg_engine) as holder, exclusive_transaction(holder, LogLock.APPEND):
        for engine, free in ((other_pg_engine, True), (pg_engine, False)):
            with Session(engine) as session:
                session.execute(text("SET lock_timeout = '300ms'"))
                session.commit()
                if free:
                    with exclusive_transaction(session, LogLock.APPEND):
                        pass
                else:
                    with (
                        pytest.raises(LogBusyError),
                        exclusive_transaction(session, LogLock.APPEND),
                    ):
                        pass


@pytest.mark.postgres
def test_a_lost_session_is_noticed(pg_engine: Engine) -> None:
    lock = AdvisoryWorkerLock(pg_engine)
    assert lock.try_acquire()
    assert lock._conn is not None
    pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
    lock._conn.commit()
    with pg_engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(LockLostError):
        lock.ensure_held()
    lock.release()
    other = AdvisoryWorkerLock(pg_engine)
    assert other.try_acquire()  # the lock died with the session
    other.release()


_HOLD_PG_LOCK = """
import sys, time
from exchange.anchoring.lock import worker_lock
from exchange.db import make_engine
from exchange.log.locking import LogBusyError, LogLock, exclusive_transaction
from exchange.log.testing import postgres_schema
lock = worker_lock(make_engine(sys.argv[1]))
assert lock.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.postgres
def test_a_killed_holder_frees_the_advisory_lock(pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_PG_LOCK, url], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = worker_lock(pg_engine)
        assert not lock.try_acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert lock.acquire(wait=True, poll_s=0.05, stop=_deadline_event(30))
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()


def _deadline_event(seconds: float) -> threading.Event:
    event = threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.daemon = True
    timer.start()
    return event


@pytest.mark.postgres
@pytest.mark.chain
def test_the_worker_anchors_from_postgresql(pg_engine: Engine, devnet: Devnet) -> None:
    migrations.upgrade(pg_engine)
    chain = chain_client(devnet.rpc_url)
    registry = fresh_registry(chain)
    root = add_checkpoint(pg_engine, 9)
    report = make_worker(pg_engine, chain, registry, confirmations=1).run_once()
    assert report.ok and report.finalized == (9,)
    stored = row(pg_engine, 9)
    assert stored.root == root and stored.raw_tx
    assert anchored_sizes(registry) == [9]
