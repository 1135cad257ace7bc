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
from sqlalchemy import func, select, update
from sqlmodel import Session, col

from exchange.log.errors import (
    ActorMismatchError,
    CorruptEntryError,
    DuplicateRecordError,
    InvalidPublicKeyError,
    InvalidRecordError,
    RecordSignatureError,
)
from exchange.log.models import MAX_PROMISE_BATCH, LogEntry, PromiseBatchRow
from exchange.log.queries import promise_of
from exchange.log.service import (
    Submission,
    append,
    append_many,
    check_submission,
    commit_groups,
    parse_submission,
    store,
)
from exchange.log.testing import LogDatabase, append_worker, isolated_database
from ledger.checkpoint import Promise, PromiseProofError
from ledger.errors import InvalidSignature
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


def _batches(db: LogDatabase) -> dict[int, PromiseBatchRow]:
    with Session(db.engine) as session:
        return {b.first_index: b for b in session.execute(select(PromiseBatchRow)).scalars()}


def _submission(actor: SM2PrivateKey, n: int) -> Submission:
    return check_submission(_record(actor, n), actor.public_key())


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
    batches = _batches(log_db)
    for entry, promise in zip(stored, promises, strict=True):
        assert SignedRecord.from_json(entry.leaf).leaf_hash() == entry.leaf_hash
        assert entry.leaf_hash == promise.leaf_hash
        # One append, one batch of one: no proof, the batch root is the leaf hash.
        assert entry.batch_first_index == promise.batch_first_index == entry.index
        assert promise.batch_size == 1 and promise.batch_proof == ()
        batch = batches[entry.index]
        assert (batch.size, batch.batch_root) == (1, entry.leaf_hash)
        assert batch.timestamp == promise.timestamp
        assert batch.signature == promise.signature
        assert batch.log_key_id == log_key.key_id()
        assert entry.actor_key_id == actor.key_id()
        assert entry.record_type == "order.placed"
        assert entry.actor_public_key.encode() == actor.public_key().to_pem()
        with Session(log_db.engine) as session:
            assert promise_of(session, entry) == promise  # served as it was given


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"order": "o-1", "amount_fen": 100},
        {"名称": "数据集 ✓", "nested": {"z": [1, {"b": None, "a": True}], "a": '\u0000"\\'}},
        {"emoji": "\U0001f600", "big": 2**53 - 1, "neg": -5, "list": []},
    ],
)
def test_a_submission_stores_exactly_the_canonical_leaf(
    actor: SM2PrivateKey, payload: dict[str, object]
) -> None:
    signed = sign_record(actor, "order.placed", payload)
    submission = check_submission(signed, actor.public_key())
    assert submission.leaf == signed.leaf_bytes()
    assert submission.leaf_hash == signed.leaf_hash()
    assert submission.public_key_pem.encode() == actor.public_key().to_pem()


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
    # One promise batch (one signature) for the 20; each promise has its own proof.
    [batch] = _batches(log_db).values()
    assert (batch.first_index, batch.size) == (0, 20)
    assert {a.promise.signature for a in accepted} == {batch.signature}
    assert len({a.promise.batch_proof for a in accepted}) == 20
    with Session(log_db.engine) as session:
        for a, entry in zip(accepted, _stored(log_db), strict=True):
            assert promise_of(session, entry) == a.promise

    bad = [(_record(actor, n), actor.public_key()) for n in range(100, 105)]
    bad[3] = (bad[3][0], SM2PrivateKey.generate().public_key())
    with Session(log_db.engine) as session, pytest.raises(ActorMismatchError) as caught:
        append_many(session, bad, log_key)
    assert caught.value.message.startswith("records[3]:")
    assert len(_stored(log_db)) == 20


def test_a_group_commit_refuses_only_the_duplicates(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    # (Each signature is fresh, so only the same signed record is a duplicate.)
    o, a, b, c, d, e, f = (_submission(actor, n) for n in range(7))
    with Session(log_db.engine) as session:
        [old] = store(session, [o], log_key)
    groups = [
        [a],
        [b, c],
        [o],  # already in the log
        [d, a],  # repeats group 0 of the same transaction
        [e, e],  # repeats itself
        [f],
    ]
    with Session(log_db.engine) as session:
        outcomes = commit_groups(session, groups, log_key)

    first, second, in_log, in_batch, repeated, last = outcomes
    assert isinstance(first, list) and isinstance(second, list) and isinstance(last, list)
    assert [x.index for x in first + second + last] == [1, 2, 3, 4]
    assert isinstance(in_log, DuplicateRecordError) and in_log.code == "duplicate_record"
    assert f"at index {old.index}" in in_log.message
    assert isinstance(in_batch, DuplicateRecordError)
    assert in_batch.message.startswith("records[1]:") and "at index 1" in in_batch.message
    assert isinstance(repeated, DuplicateRecordError)
    assert "records[1] repeats records[0]" in repeated.message

    # The refused groups left no trace; the accepted ones share one signed batch.
    stored = _stored(log_db)
    assert [e.index for e in stored] == [0, 1, 2, 3, 4]
    assert sorted(_batches(log_db)) == [0, 1]
    public = log_key.public_key()
    with Session(log_db.engine) as session:
        for accepted in first + second + last:
            accepted.promise.verify(public)
            assert accepted.promise.batch_first_index == 1
            assert accepted.promise.batch_size == 4
            assert promise_of(session, stored[accepted.index]) == accepted.promise


def test_large_stores_are_split_into_bounded_promise_batches(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    count = MAX_PROMISE_BATCH + 5
    submissions = [_submission(actor, n) for n in range(count)]
    with Session(log_db.engine) as session:
        accepted = store(session, submissions, log_key)
    assert {first: b.size for first, b in _batches(log_db).items()} == {
        0: MAX_PROMISE_BATCH,
        MAX_PROMISE_BATCH: 5,
    }
    public = log_key.public_key()
    for a in (accepted[0], accepted[MAX_PROMISE_BATCH - 1], accepted[-1]):
        a.promise.verify(public)
    assert accepted[-1].promise.batch_first_index == MAX_PROMISE_BATCH


def test_a_served_promise_shows_a_tampered_database(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    """Promises are rebuilt from the stored batch: an entry whose batch no longer
    holds it as signed gets a promise that fails verification, not a 500."""
    with Session(log_db.engine) as session:
        store(session, [_submission(actor, n) for n in range(4)], log_key)
    public = log_key.public_key()
    with Session(log_db.engine) as session:
        # Leaf hashes of entries 1 and 2 swapped: both proofs now lead elsewhere.
        one, two = session.get(LogEntry, 1), session.get(LogEntry, 2)
        assert one is not None and two is not None
        h1, h2 = one.leaf_hash, two.leaf_hash
        session.execute(update(LogEntry).where(col(LogEntry.index) == 1).values(leaf_hash=b"x"))
        session.execute(update(LogEntry).where(col(LogEntry.index) == 2).values(leaf_hash=h1))
        session.execute(update(LogEntry).where(col(LogEntry.index) == 1).values(leaf_hash=h2))
        session.commit()
    with Session(log_db.engine) as session:
        for index in (0, 1, 2, 3):  # every proof in the batch hashes the swapped pair
            entry = session.get(LogEntry, index)
            assert entry is not None
            with pytest.raises(InvalidSignature):
                promise_of(session, entry).verify(public)
        # An entry moved out of its batch's range: an empty proof, and no verification.
        session.execute(update(LogEntry).where(col(LogEntry.index) == 3).values(index=9))
        session.commit()
        moved = session.get(LogEntry, 9)
        assert moved is not None
        promise = promise_of(session, moved)
        assert promise.batch_proof == ()
        with pytest.raises(PromiseProofError):
            promise.verify(public)
        # No batch row at all (the foreign key keeps the database from holding such an
        # entry; the read path still answers with a domain error): nothing to serve.
        orphan = LogEntry(**{**moved.model_dump(), "index": 10, "batch_first_index": 77})
        with pytest.raises(CorruptEntryError):
            promise_of(session, orphan)


def _append_concurrently(
    db: LogDatabase,
    log_key: SM2PrivateKey,
    processes: int,
    per_process: int,
    batch: int,
    threads: int = 0,
) -> list[tuple[int, dict[str, object]]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=append_worker,
            args=(db.url, log_key.to_pem(), per_process, barrier, results, batch, threads),
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
@pytest.mark.parametrize(
    ("batch", "threads"),
    [(1, 0), (5, 0), (1, 6), (3, 4)],
    ids=["append", "append_many", "appender", "appender-batches"],
)
def test_several_processes_get_unique_gap_free_indexes(
    log_db: LogDatabase, log_key: SM2PrivateKey, batch: int, threads: int
) -> None:
    """Four processes append at once, one by one, in batches, or (``threads``) each
    through its own group-committing Appender fed by several threads."""
    processes, per_process = 4, 40
    collected = _append_concurrently(log_db, log_key, processes, per_process, batch, threads)

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
        for entry in stored:  # as served later: rebuilt from the stored batch
            assert promise_of(session, entry) == by_index[entry.index]
    batches = _batches(log_db)
    covered = sorted(
        i for b in batches.values() for i in range(b.first_index, b.first_index + b.size)
    )
    assert covered == list(range(total))  # the batches tile the log
    if threads:
        assert len(batches) < total // batch  # some transactions committed several submissions
