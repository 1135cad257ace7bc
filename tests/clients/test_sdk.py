"""The SDK against the real app: the sync client over a real uvicorn, the async client
in-process through ``httpx.ASGITransport`` (with the app's lifespan running, so
the appender and sequencer work). SQLite always, PostgreSQL when
``TEST_POSTGRES_URL`` is set. Every answer is checked the way the SDK checks
it (promises, checkpoints, entries against the log key), proofs verify, and
server refusals arrive as ``APIError(status_code, code, message)``. The client's
key is an enrolled participant appending notes (what the log's raw append takes)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from test_sdk_support import enrol

from clients.sdk import (
    APIError,
    AsyncExchangeClient,
    ExchangeClient,
    ReceiptPendingError,
    ResponseVerificationError,
)
from exchange.app import create_app
from exchange.log.testing import LogDatabase, isolated_database
from exchange.settings import Settings
from ledger.checkpoint import Checkpoint
from ledger.merkle import RootMismatchError
from ledger.records import SignedRecord
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as db:
        yield db


@pytest.fixture(scope="module")
def alice() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture
def app(log_db: LogDatabase, tmp_path: Path, alice: SM2PrivateKey) -> FastAPI:
    app = create_app(
        Settings(data_dir=tmp_path / "data", database_url=log_db.url, sequencer_interval=0.02)
    )
    enrol(app.state.engine, alice)
    return app


def _wait_for_size(client: ExchangeClient, size: int, timeout: float = 20.0) -> Checkpoint:
    deadline = time.monotonic() + timeout
    while True:
        try:
            checkpoint = client.checkpoint()
            if checkpoint.tree_size >= size:
                return checkpoint
        except APIError as exc:
            assert exc.code == "no_checkpoint"
        assert time.monotonic() < deadline, f"tree size {size} never checkpointed"
        time.sleep(0.02)


def test_log_round_trip_with_the_sync_client(
    app: FastAPI, alice: SM2PrivateKey, live_server: Any
) -> None:
    with live_server(app) as url, ExchangeClient(url, key=alice) as client:
        health = client.health()
        assert health.ok and health.database.ok and not health.chain.configured

        published = client.log_key()
        assert published.sm2_public_key == app.state.log_key.public_key()
        assert published.key_id == published.sm2_public_key.key_id()

        first = client.sign("note.added", {"listing": "L-0", "price_fen": 12_000})
        assert first.record.actor == alice.key_id()
        appended = client.append(first)
        assert appended.index == 0
        assert appended.leaf_hash_bytes == first.leaf_hash() == appended.signed_promise.leaf_hash
        one = _wait_for_size(client, 1)
        assert one.tree_size == 1

        batch = [client.sign("note.added", {"listing": f"L-{n}"}) for n in (1, 2, 3)]
        appended_many = client.append_many(batch)
        assert [a.index for a in appended_many] == [1, 2, 3]
        assert [a.leaf_hash_bytes for a in appended_many] == [r.leaf_hash() for r in batch]

        latest = _wait_for_size(client, 4)
        assert client.checkpoint(4) == latest

        records = [first, *batch]
        for index, signed in enumerate(records):
            entry = client.entry(index)
            assert entry.signed_record == signed
            assert entry.actor_key == alice.public_key()
            proof = client.inclusion_proof(index, tree_size=4)
            assert (proof.index, proof.tree_size, proof.leaf_hash) == (index, 4, entry.leaf_hash)
            proof.verify(latest.root)
            by_hash = client.inclusion_proof(leaf_hash=signed.leaf_hash())
            assert by_hash.index == index
        with pytest.raises(RootMismatchError):
            client.inclusion_proof(0, tree_size=4).verify(bytes(32))

        assert client.checkpoint(1) == one
        consistency = client.consistency_proof(1, 4)
        consistency.verify(one.root, latest.root)
        with pytest.raises(RootMismatchError):
            consistency.verify(one.root, bytes(32))

        assert client.anchors() == []  # no chain configured
        with pytest.raises(ReceiptPendingError) as pending:
            client.receipt(0)
        assert (pending.value.status_code, pending.value.code) == (409, "receipt_pending")
        started = time.monotonic()
        with pytest.raises(ReceiptPendingError):
            client.wait_for_receipt(0, timeout=0.2, interval=0.05)
        assert time.monotonic() - started < 5


def test_server_refusals_become_api_errors(
    app: FastAPI, alice: SM2PrivateKey, live_server: Any
) -> None:
    with live_server(app) as url, ExchangeClient(url, key=alice) as client:
        cases: list[tuple[Any, int, str]] = [
            (lambda: client.checkpoint(), 404, "no_checkpoint"),
            (lambda: client.checkpoint(7), 404, "checkpoint_not_found"),
            (lambda: client.entry(0), 404, "entry_not_found"),
            (lambda: client.entry(-1), 400, "invalid_index"),
            (lambda: client.receipt(5), 404, "entry_not_found"),
            (lambda: client.consistency_proof(0, 1), 400, "invalid_tree_size"),
            (lambda: client.anchors(limit=0), 422, "invalid_request"),
        ]
        for call, status, code in cases:
            with pytest.raises(APIError) as caught:
                call()
            assert (caught.value.status_code, caught.value.code) == (status, code), caught.value
            assert caught.value.message

        signed = client.sign("note.added", {"listing": "L-dup"})
        client.append(signed)
        with pytest.raises(APIError) as duplicate:
            client.append(signed)
        assert (duplicate.value.status_code, duplicate.value.code) == (409, "duplicate_record")

        # A signature taken from another record: the server refuses, nothing is stored.
        other = client.sign("note.added", {"listing": "L-other"})
        forged = SignedRecord(record=other.record, signature=signed.signature)
        with pytest.raises(APIError) as refused:
            client.append(forged)
        assert (refused.value.status_code, refused.value.code) == (400, "invalid_signature")

        _wait_for_size(client, 1)
        with pytest.raises(APIError) as beyond:
            client.consistency_proof(1, 2)
        assert (beyond.value.status_code, beyond.value.code) == (400, "invalid_tree_size")


def test_a_pinned_log_key_refuses_the_exchange_s_statements(
    app: FastAPI, alice: SM2PrivateKey, live_server: Any
) -> None:
    impostor = SM2PrivateKey.generate().public_key()
    with live_server(app) as url:
        with ExchangeClient(url, key=alice, trusted_log_key=impostor) as pinned:
            signed = pinned.sign("note.added", {"listing": "L-pin"})
            with pytest.raises(ResponseVerificationError, match="signed by log key"):
                pinned.append(signed)  # stored, but its promise is not by the pinned key
        with ExchangeClient(url) as reader:
            _wait_for_size(reader, 1)
            assert reader.entry(0).signed_record == signed  # trust on first use: the published key
        with ExchangeClient(url, trusted_log_key=impostor) as pinned_reader:
            with pytest.raises(ResponseVerificationError):
                pinned_reader.checkpoint()
            with pytest.raises(ResponseVerificationError):
                pinned_reader.entry(0)


def test_the_async_client_in_process_over_asgi(app: FastAPI, alice: SM2PrivateKey) -> None:
    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AsyncExchangeClient(
                "http://exchange.test", key=alice, transport=transport
            ) as client:
                assert (await client.health()).ok
                assert (await client.log_key()).sm2_public_key == app.state.log_key.public_key()
                records = [client.sign("note.added", {"order": f"O-{n}"}) for n in range(3)]

                async def checkpointed(size: int) -> Checkpoint:
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            latest = await client.checkpoint()
                            if latest.tree_size >= size:
                                return latest
                        except APIError as exc:
                            assert exc.code == "no_checkpoint"
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.02)

                first = await client.append(records[0])
                one = await checkpointed(1)
                rest = await client.append_many(records[1:])
                assert [first.index, *(a.index for a in rest)] == [0, 1, 2]
                latest = await checkpointed(3)
                for index, signed in enumerate(records):
                    assert (await client.entry(index)).signed_record == signed
                    (await client.inclusion_proof(index)).verify(latest.root)
                assert await client.checkpoint(1) == one
                (await client.consistency_proof(1, 3)).verify(one.root, latest.root)
                assert await client.anchors() == []
                with pytest.raises(ReceiptPendingError):
                    await client.receipt(0)
                with pytest.raises(ReceiptPendingError):
                    await client.wait_for_receipt(1, timeout=0.1, interval=0.02)
                with pytest.raises(APIError) as missing:
                    await client.entry(99)
                assert (missing.value.status_code, missing.value.code) == (
                    404,
                    "entry_not_found",
                )
                with pytest.raises(APIError) as duplicate:
                    await client.append(records[0])
                assert duplicate.value.code == "duplicate_record"

    asyncio.run(scenario())
