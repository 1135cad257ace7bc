"""End to end: ``shancheng serve --workers 2`` on PostgreSQL, a real anvil and the
auditor. Concurrent buyers race for the last seat of a limited offer through
both worker processes: exactly one buys it, the log stays one gap-free
sequence, exactly one sequencer and one anchoring worker run across the two
processes, and every entry's receipt verifies against the chain."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from clients.audit import verify_bundle_file
from clients.signing import SM2RequestSigner
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.anchoring.lock import AdvisoryWorkerLock, worker_lock
from exchange.app import create_app
from exchange.books import assert_books_balance
from exchange.log.testing import LogDatabase, isolated_database
from exchange.settings import Settings
from ledger.checkpoint import Promise
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
REPO = Path(__file__).resolve().parents[1]
RACERS = 12
SEATS = 3

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(settings: dict[str, Any], workers: int, stderr: Path | None = None) -> Iterator[str]:
    """``shancheng serve --workers N`` in a child process, configured by SHANCHENG_*
    (none inherited from this process), its standard error written to ``stderr``."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")},
        **{f"SHANCHENG_{k.upper()}": v for k, v in settings.items()},
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "exchange.cli", "serve", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(stderr.open("wb")) if stderr else subprocess.DEVNULL
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        stack.callback(_stop, process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield url


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: list[httpx.Client] = []

    def http(self, key: SM2PrivateKey | None = None) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url, auth=SM2RequestSigner(key) if key else None, timeout=60
        )
        self.clients.append(client)
        return client

    def act(
        self, key: SM2PrivateKey, method: str, path: str, kind: str, payload: dict[str, Any]
    ) -> httpx.Response:
        body = {"record": sign_record(key, kind, payload).to_dict()}
        return self.http(key).request(method, path, json=body)

    def register(self, role: str, operator: SM2PrivateKey | None = None) -> SM2PrivateKey:
        """A new participant; approved by ``operator`` when given."""
        key = SM2PrivateKey.generate()
        pem = key.public_key().to_pem().decode()
        payload = {"display_name": f"{role} {key.key_id()[:6]}", "role": role, "public_key": pem}
        body = {"record": sign_record(key, "participant.registered", payload).to_dict()}
        response = self.http().post("/participants", json=body)
        assert response.status_code == 201, response.text
        if operator is None:
            return key
        approved = self.act(
            operator,
            "POST",
            f"/participants/{key.key_id()}/approve",
            "participant.approved",
            {"participant": key.key_id()},
        )
        assert approved.status_code == 200, approved.text
        return key

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _logged(response: httpx.Response, log_pub: Any) -> int:
    """The response's log receipt: its promise verifies; returns its index."""
    log = response.json()["log"]
    promise = Promise.from_dict(log["promise"])
    promise.verify(log_pub)
    assert promise.index == log["index"]
    return int(log["index"])


def _holders(db: LogDatabase, key: int) -> int:
    """Backends holding the session-level advisory lock ``key``."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    with db.engine.connect() as connection:
        count = connection.execute(
            text(
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid::bigint = :high AND objid::bigint = :low "
                "AND objsubid = 1"
            ),
            {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF},
        ).scalar_one()
    return int(count)


@pytest.mark.slow
def test_two_workers_sell_the_last_seat_once_and_every_receipt_verifies(
    tmp_path: Path, devnet: Devnet
) -> None:
    assert POSTGRES_URL is not None
    deployment, _ = ensure_registry(devnet.rpc_url, tmp_path / "deployment.json")
    operator = SM2PrivateKey.generate()
    with isolated_database(POSTGRES_URL, tmp_path) as db:
        settings: dict[str, Any] = {
            "data_dir": str(tmp_path / "var"),
            "database_url": db.url,
            "operator_public_keys": json.dumps([operator.public_key().to_pem().decode()]),  # env
            "rpc_url": devnet.rpc_url,
            "registry_address": deployment.registry_address,
            "sequencer_interval": "0.05",
            "anchor_interval_s": "0",
            "anchor_size_threshold": "1",
            "anchor_confirmations": "1",
            "anchor_poll_s": "0.05",
        }
        # the same log key as the server's (same data_dir), to verify its promises
        keys = [operator.public_key().to_pem().decode()]
        prepared = create_app(Settings(**{**settings, "operator_public_keys": keys}))
        log_pub = prepared.state.log_key.public_key()
        prepared.state.engine.dispose()
        with served(settings, workers=2) as url:
            client = Client(url)
            try:
                loser = _race(client, operator, log_pub, db)
                _withdrawals_race(client, operator, loser)
                _receipts_verify(client, db, tmp_path, devnet.rpc_url, deployment.registry_address)
                assert_books_balance(db.engine)  # the books replay the log and reconcile
            finally:
                client.close()


def _race(client: Client, operator: SM2PrivateKey, log_pub: Any, db: LogDatabase) -> SM2PrivateKey:
    """The last seat raced for; a buyer who lost (5,000 fen still available)."""
    owner = client.register("provider", operator)
    listing_id = str(uuid.uuid4())
    draft = {
        "listing_id": listing_id,
        "title": "重庆公交客流 2025",
        "description": "Hourly boardings per stop.",
        "category": "transport",
        "tags": ["bus", "chongqing"],
        "providers": [{"key_id": owner.key_id(), "share_bps": 10_000}],
        "columns": [{"name": "stop", "type": "string"}, {"name": "boardings", "type": "integer"}],
        "sample_rows": [{"stop": "解放碑", "boardings": 1200}],
        "row_count": 1_000_000,
        "byte_size": 52_000_000,
        "content_digest": "ab" * 32,
        "format": "csv",
        "update_frequency": "monthly",
        "licence": "Shancheng standard data licence v1",
        "usage_terms": "No re-identification.",
        "pricing": {"model": "fixed", "price": 1_000, "seats": SEATS},
        "custody": "exchange",
        "declarations": {
            "classification": "一般",
            "personal_information": False,
            "source_legality": "Collected by the operator under contract 2025-17.",
            "permitted_purposes": ["research", "planning"],
        },
    }
    response = client.act(owner, "POST", "/listings", "listing.drafted", draft)
    assert response.status_code == 201, response.text
    for key, action, kind in (
        (owner, "submit", "listing.submitted"),
        (operator, "review", "listing.review_started"),
        (operator, "publish", "listing.published"),
    ):
        path = f"/listings/{listing_id}/{action}"
        response = client.act(key, "POST", path, kind, {"listing_id": listing_id})
        assert response.status_code == 200, response.text

    buyers = [client.register("buyer") for _ in range(SEATS - 1 + RACERS)]
    bodies = []
    for buyer in buyers:
        payload = {"participant": buyer.key_id(), "amount": 5_000, "reference": "t"}
        path = f"/accounts/{buyer.key_id()}/deposits"
        assert client.act(operator, "POST", path, "deposit.credited", payload).status_code == 201
        quoted = client.http(buyer).post(f"/listings/{listing_id}/quotes", json={})
        assert quoted.status_code == 201, quoted.text
        order = {
            "order_id": str(uuid.uuid4()),
            "quote": quoted.json()["quote"],
            "declaration": {"purpose": "internal_analytics", "processing_region": "CN"},
        }
        bodies.append({"record": sign_record(buyer, "order.placed", order).to_dict()})
    for buyer, body in zip(buyers[: SEATS - 1], bodies, strict=False):  # all seats but the last
        placed = client.http(buyer).post("/orders", json=body)
        assert placed.status_code == 201, placed.text

    racers = list(zip(buyers[SEATS - 1 :], bodies[SEATS - 1 :], strict=True))
    https = [client.http(buyer) for buyer, _ in racers]  # keep-alive: spread over both workers
    results: list[httpx.Response | None] = [None] * len(racers)
    barrier = threading.Barrier(len(racers))

    def race(i: int) -> None:
        barrier.wait()
        results[i] = https[i].post("/orders", json=racers[i][1])

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(racers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [r.status_code if r is not None else 0 for r in results]
    assert statuses.count(201) == 1, statuses
    assert set(statuses) == {201, 409}, statuses
    for r in results:
        assert r is not None
        if r.status_code == 201:
            _logged(r, log_pub)
        else:
            assert r.json()["code"] == "sold_out"
    loser = next(
        buyer
        for (buyer, _), r in zip(racers, results, strict=True)
        if r is not None and r.status_code == 409
    )

    with db.engine.connect() as connection:
        indexes = [row[0] for row in connection.execute(text('SELECT "index" FROM log_entry'))]
        orders = connection.execute(
            text("SELECT count(*) FROM orders WHERE listing_id = :id"), {"id": listing_id}
        ).scalar_one()
    assert sorted(indexes) == list(range(len(indexes)))  # one gap-free sequence
    assert orders == SEATS

    # one sequencer and one anchoring worker across the two processes
    for role in ("sequencer", "anchor-worker"):
        lock = worker_lock(db.engine, role)
        assert isinstance(lock, AdvisoryWorkerLock)
        assert _holders(db, lock.key()) == 1, role
    return loser


def _withdrawals_race(client: Client, operator: SM2PrivateKey, buyer: SM2PrivateKey) -> None:
    """Three withdrawals of 2,000 fen at once from 5,000 available, spread over both
    workers: two are held, one is refused (402); the operator pays one, rejects one."""
    bodies = [
        {
            "record": sign_record(
                buyer,
                "withdrawal.requested",
                {"withdrawal_id": str(uuid.uuid4()), "amount": 2_000, "destination": "bank"},
            ).to_dict()
        }
        for _ in range(3)
    ]
    https = [client.http(buyer) for _ in bodies]
    results: list[httpx.Response | None] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def withdraw(i: int) -> None:
        barrier.wait()
        results[i] = https[i].post("/withdrawals", json=bodies[i])

    threads = [threading.Thread(target=withdraw, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code if r is not None else 0 for r in results)
    assert statuses == [201, 201, 402], [r.text for r in results if r is not None]
    held = [r.json()["withdrawal"]["id"] for r in results if r is not None and r.status_code == 201]
    for withdrawal_id, outcome, field in zip(
        held, ("paid", "rejected"), ("reference", "reason"), strict=True
    ):
        payload = {"withdrawal_id": withdrawal_id, field: "e2e"}
        path = f"/withdrawals/{withdrawal_id}/{outcome}"
        decided = client.act(operator, "POST", path, f"withdrawal.{outcome}", payload)
        assert decided.status_code == 200, decided.text
    account = client.http(buyer).get("/accounts/me").json()["account"]
    assert (account["available"], account["held"]) == (3_000, 0)


def _receipts_verify(
    client: Client, db: LogDatabase, tmp_path: Path, rpc_url: str, registry: str
) -> None:
    """Every entry gets anchored by the one anchoring worker; its receipt verifies."""
    with db.engine.connect() as connection:
        size = connection.execute(text("SELECT count(*) FROM log_entry")).scalar_one()
    deadline = time.monotonic() + 120
    bundle = tmp_path / "bundle.json"
    for index in range(size):
        while True:
            response = client.http().get(f"/receipts/{index}")
            if response.status_code == 200:
                break
            assert response.json()["code"] == "receipt_pending", response.text
            assert time.monotonic() < deadline, f"entry {index} was never anchored"
            time.sleep(0.1)
        bundle.write_text(json.dumps(response.json()))
        verify_bundle_file(bundle, rpc_url, registry, trusted_log_key=None)
