"""Appending to the log: signature checks, promises, duplicates, and gap-free indexes
with several processes appending at once (SQLite file and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, col

from exchange.log.errors import (
    ActorMismatchError,
    DuplicateRecordError,
    InvalidPublicKeyError,
    InvalidRecordError,
    RecordSignatureError,
)
from exchange.log.models import LogEntry
from exchange.log.service import append, append_many, parse_submission
from exchange.log.testing import LogDatabase, append_worker, isolated_database
from ledger.checkpoint import Promise
from ledger.merkle import leaf_hash
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as db:
        yield db


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def actor() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _record(actor: SM2PrivateKey, n: int) -> SignedRecord:
    return sign_record(actor, "order.placed", {"order": f"o-{n}", "amount_fen": 100 * n})


def _stored(db: LogDatabase) -> list[LogEntry]:
    with Session(db.engine) as session:
        return list(session.execute(select(LogEntry).order_by(col(LogEntry.index))).scalars())


def test_append_stores_the_leaf_and_returns_a_verifiable_promise(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    promises: list[Promise] = []
    for n in range(3):
        signed = _record(actor, n)
        with Session(log_db.engine) as session:
            entry, promise = append(session, signed, actor.public_key(), log_key)
        assert entry.index == n == promise.index
        assert promise.leaf_hash == signed.leaf_hash() == leaf_hash(signed.leaf_bytes())
        promise.verify(log_key.public_key())
        promises.append(promise)

    stored = _stored(log_db)
    assert [e.index for e in stored] == [0, 1, 2]
    for entry, promise in zip(stored, promises, strict=True):
        assert SignedRecord.from_json(entry.leaf).leaf_hash() == entry.leaf_hash
        assert entry.leaf_hash == promise.leaf_hash
        assert entry.accepted_at == promise.timestamp
        assert entry.promise_signature == promise.signature
        assert entry.log_key_id == log_key.key_id()
        assert entry.actor_key_id == actor.key_id()
        assert entry.record_type == "order.placed"
        assert entry.actor_public_key.encode() == actor.public_key().to_pem()


def test_a_tampered_record_is_refused_and_nothing_is_stored(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    signed = _record(actor, 1).to_dict()
    signed["record"]["payload"]["amount_fen"] = 1  # changed after signing
    record, public_key = parse_submission(signed, actor.public_key().to_pem().decode())
    with Session(log_db.engine) as session, pytest.raises(RecordSignatureError) as caught:
        append(session, record, public_key, log_key)
    assert caught.value.status == 400 and caught.value.code == "invalid_signature"
    assert _stored(log_db) == []


def test_another_actors_key_is_refused(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    other = SM2PrivateKey.generate()
    with Session(log_db.engine) as session, pytest.raises(ActorMismatchError) as caught:
        append(session, _record(actor, 1), other.public_key(), log_key)
    assert caught.value.code == "actor_mismatch"
    assert actor.key_id() in caught.value.message and other.key_id() in caught.value.message
    assert _stored(log_db) == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("signature"), "signature"),
        (lambda d: d["record"].update(type="Not A Type"), "record.type"),
        (lambda d: d["record"].update(timestamp=1.5), "record.timestamp"),
        (lambda d: d["record"]["payload"].update(price=9.99), "floats"),
        (lambda d: d["record"].update(extra=1), "unknown field"),
        (lambda d: d.update(signature="not base64!"), "base64"),
    ],
)
def test_malformed_records_are_refused_by_schema(
    actor: SM2PrivateKey, mutate: object, fragment: str
) -> None:
    data = _record(actor, 1).to_dict()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(InvalidRecordError) as caught:
        parse_submission(data, actor.public_key().to_pem().decode())
    assert caught.value.code == "invalid_record"
    assert fragment in caught.value.message


def test_a_malformed_public_key_is_refused(actor: SM2PrivateKey) -> None:
    with pytest.raises(InvalidPublicKeyError) as caught:
        parse_submission(_record(actor, 1).to_dict(), "-----BEGIN PUBLIC KEY-----\nAAAA\n")
    assert caught.value.code == "invalid_public_key"


def test_a_duplicate_record_is_refused(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    signed = _record(actor, 1)
    with Session(log_db.engine) as session:
        append(session, signed, actor.public_key(), log_key)
    with Session(log_db.engine) as session, pytest.raises(DuplicateRecordError) as caught:
        append(session, signed, actor.public_key(), log_key)
    assert caught.value.status == 409 and caught.value.code == "duplicate_record"
    assert "index 0" in caught.value.message
    with Session(log_db.engine) as session, pytest.raises(DuplicateRecordError):
        append_many(session, [(_record(actor, 2), actor.public_key())] * 2, log_key)
    with Session(log_db.engine) as session, pytest.raises(DuplicateRecordError):
        append_many(
            session,
            [(_record(actor, 3), actor.public_key()), (signed, actor.public_key())],
            log_key,
        )
    assert [e.index for e in _stored(log_db)] == [0]


def test_append_many_is_consecutive_and_all_or_nothing(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    items = [(_record(actor, n), actor.public_key()) for n in range(20)]
    with ThreadPoolExecutor(2) as pool, Session(log_db.engine) as session:
        accepted = append_many(session, items, log_key, executor=pool)
    assert [a.entry.index for a in accepted] == list(range(20))
    for a, (signed, _) in zip(accepted, items, strict=True):
        assert a.promise.leaf_hash == signed.leaf_hash()
        a.promise.verify(log_key.public_key())

    bad = [(_record(actor, n), actor.public_key()) for n in range(100, 105)]
    bad[3] = (bad[3][0], SM2PrivateKey.generate().public_key())
    with Session(log_db.engine) as session, pytest.raises(ActorMismatchError) as caught:
        append_many(session, bad, log_key)
    assert caught.value.message.startswith("records[3]:")
    assert len(_stored(log_db)) == 20


def _append_concurrently(
    db: LogDatabase, log_key: SM2PrivateKey, processes: int, per_process: int, batch: int
) -> list[tuple[int, dict[str, object]]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=append_worker,
            args=(db.url, log_key.to_pem(), per_process, barrier, results, batch),
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    collected: list[tuple[int, dict[str, object]]] = []
    try:
        for _ in workers:
            collected.extend(results.get(timeout=300))
    except queue.Empty:  # pragma: no cover - a worker died; its exit code says why
        pass
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():  # pragma: no cover
                worker.kill()
                worker.join()
    assert [w.exitcode for w in workers] == [0] * processes
    return collected


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 5])
def test_several_processes_get_unique_gap_free_indexes(
    log_db: LogDatabase, log_key: SM2PrivateKey, batch: int
) -> None:
    processes, per_process = 4, 40
    collected = _append_concurrently(log_db, log_key, processes, per_process, batch)

    total = processes * per_process
    assert sorted(index for index, _ in collected) == list(range(total))
    public = log_key.public_key()
    for index, promise_dict in collected:
        promise = Promise.from_dict(promise_dict)
        assert promise.index == index
        promise.verify(public)
    stored = _stored(log_db)
    assert [e.index for e in stored] == list(range(total))
    by_index = {index: Promise.from_dict(p) for index, p in collected}
    for entry in stored:
        assert entry.leaf_hash == by_index[entry.index].leaf_hash
    with Session(log_db.engine) as session:
        assert session.execute(select(func.count()).select_from(LogEntry)).scalar_one() == total
