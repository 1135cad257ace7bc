"""The one write transaction (exchange.log.batch): several requests' staged state
changes and their records in one group commit; a change refused in the
transaction (a conditional update, a stale row, a unique key, a duplicate
record) rolls back alone and leaves nothing, the others commit with one
promise-batch signature at consecutive indexes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session, SQLModel

from exchange.accounts.models import Account
from exchange.accounts.service import InsufficientFundsError, at_flush, hold
from exchange.auth.errors import ReplayedNonceError
from exchange.auth.models import AuthNonce
from exchange.auth.verifier import NonceClaim
from exchange.errors import ConflictError
from exchange.log.appender import Appender
from exchange.log.batch import (
    BatchItem,
    ConcurrentUpdateError,
    commit_batch,
    commit_pending,
    forget_committed,
    run_until_committed,
    take_staged,
)
from exchange.log.errors import DuplicateRecordError
from exchange.log.models import LogEntry, PromiseBatchRow
from exchange.log.service import Submission, check_submission
from exchange.log.testing import LogDatabase, isolated_database
from exchange.participants.models import Participant
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as d:
        with Session(d.engine) as session:
            session.add(Account(key_id="alice", available=100, held=0, created_at=1))
            bob = _participant("bob")
            bob.display_name = "Bob"
            session.add(bob)
            session.commit()
        yield d


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def actor() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def _submission(actor: SM2PrivateKey, n: int) -> Submission:
    return check_submission(sign_record(actor, "deposit.credited", {"n": n}), actor.public_key())


def _staged_hold(session: Session, submission: Submission, amount: int, key: str) -> BatchItem:
    """A change staged on a request's own session: hold ``amount`` of alice's and
    register participant ``key``."""
    with at_flush(session, lambda connection: hold(connection, "alice", amount)):
        session.add(_participant(key))
        return BatchItem([submission], take_staged(session))


def _participant(key_id: str) -> Participant:
    return Participant(
        key_id=key_id,
        display_name=key_id,
        role="buyer",
        status="active",
        public_key="pem",
        registered_at=1,
        updated_at=1,
    )


def _rename(session: Session, submission: Submission, name: str) -> BatchItem:
    bob = session.get(Participant, "bob")
    assert bob is not None
    bob.display_name = name
    return BatchItem([submission], take_staged(session))


def _count(db: LogDatabase, table: type[SQLModel]) -> int:
    with Session(db.engine) as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def test_one_transaction_commits_the_accepted_changes_and_refuses_the_others_alone(
    db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    subs = [_submission(actor, n) for n in range(7)]
    with Session(db.engine) as requests:
        items = [
            _staged_hold(requests, subs[0], 60, "p-1"),  # fits
            _staged_hold(requests, subs[1], 50, "p-2"),  # 40 left: refused in the transaction
            _rename(requests, subs[2], "Bob 2"),  # both loaded bob at row_version 1 ...
            _rename(requests, subs[3], "Bob 3"),  # ... so the second is stale
            BatchItem([subs[4]], take_staged(requests)),  # a record without a change
            BatchItem([subs[0]]),  # the same record as item 0: a duplicate
            _staged_hold(requests, subs[5], 10, "p-1"),  # the same participant key as item 0
        ]
    with Session(db.engine, expire_on_commit=False) as committer:
        outcomes = commit_batch(committer, items, log_key)

    held, poor, renamed, stale, plain, duplicate, taken_key = outcomes
    assert isinstance(poor, InsufficientFundsError)
    assert isinstance(stale, ConcurrentUpdateError) and stale.code == "concurrent_update"
    assert isinstance(duplicate, DuplicateRecordError)
    assert isinstance(taken_key, ConflictError)
    assert isinstance(held, list) and isinstance(renamed, list) and isinstance(plain, list)
    assert [a.index for a in held + renamed + plain] == [0, 1, 2]
    for accepted in held + renamed + plain:
        accepted.promise.verify(log_key.public_key())
        assert accepted.promise.batch_size == 3

    assert _count(db, LogEntry) == 3 and _count(db, PromiseBatchRow) == 1
    with Session(db.engine) as session:
        alice = session.get(Account, "alice")
        bob = session.get(Participant, "bob")
        assert alice is not None and (alice.available, alice.held) == (40, 60)
        assert bob is not None and (bob.display_name, bob.row_version) == ("Bob 2", 2)
        assert session.get(Participant, "p-1") is not None
        assert session.get(Participant, "p-2") is None  # the refused hold's row is gone too
    assert _count(db, Participant) == 2


def _claim(nonce: str) -> NonceClaim:
    return NonceClaim(key_id="alice", nonce=nonce * 16, expires_at=2**50)


def test_a_replayed_nonce_refuses_only_its_item_and_leaves_nothing(
    db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    """Two requests signed with the same nonce reach one batch: the first is
    stored with its nonce, the second is refused at its nonce (401) and nothing of
    its change or record is stored; a third with a fresh nonce is unaffected."""
    with Session(db.engine) as first, Session(db.engine) as replay, Session(db.engine) as fresh:
        run_until_committed(first, _claim("a").store)
        run_until_committed(replay, _claim("a").store)
        run_until_committed(fresh, _claim("b").store)
        items = [
            _staged_hold(first, _submission(actor, 30), 10, "p-1"),
            _staged_hold(replay, _submission(actor, 31), 10, "p-2"),
            _staged_hold(fresh, _submission(actor, 32), 10, "p-3"),
        ]
    with Session(db.engine, expire_on_commit=False) as committer:
        held, replayed, other = commit_batch(committer, items, log_key)

    assert isinstance(replayed, ReplayedNonceError) and replayed.status == 401
    assert isinstance(held, list) and isinstance(other, list)
    assert [a.index for a in held + other] == [0, 1]
    assert _count(db, LogEntry) == 2 and _count(db, AuthNonce) == 2
    with Session(db.engine) as session:
        alice = session.get(Account, "alice")
        assert alice is not None and (alice.available, alice.held) == (80, 20)
        assert session.get(Participant, "p-2") is None


def test_a_nonce_no_committed_change_carried_is_stored_on_its_own(
    db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    """Carried by a committed change, the nonce is done; else (a refused item, no
    item at all) ``commit_pending`` stores it, and refuses it if it is a replay."""
    with Session(db.engine) as request:
        run_until_committed(request, _claim("c").store)
        item = _staged_hold(request, _submission(actor, 40), 10, "p-1")
        with Session(db.engine, expire_on_commit=False) as committer:
            [outcome] = commit_batch(committer, [item], log_key)
        assert isinstance(outcome, list)
        forget_committed(request)
        commit_pending(request)  # nothing left to store
    assert _count(db, AuthNonce) == 1

    with Session(db.engine) as request:
        run_until_committed(request, _claim("d").store)
        poor = _staged_hold(request, _submission(actor, 41), 1000, "p-2")
        with Session(db.engine, expire_on_commit=False) as committer:
            [refused] = commit_batch(committer, [poor], log_key)
        assert isinstance(refused, InsufficientFundsError)
        assert _count(db, AuthNonce) == 1
        commit_pending(request)
    assert _count(db, AuthNonce) == 2

    with Session(db.engine) as request:
        run_until_committed(request, _claim("d").store)
        with pytest.raises(ReplayedNonceError):
            commit_pending(request)
    assert _count(db, AuthNonce) == 2 and _count(db, LogEntry) == 1


def test_the_rows_come_back_to_the_request_as_written(
    db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    with Session(db.engine) as request:
        item = _rename(request, _submission(actor, 10), "Bob again")
        with Session(db.engine, expire_on_commit=False) as committer:
            [outcome] = commit_batch(committer, [item], log_key)
        assert isinstance(outcome, list)
        assert item.change is not None
        item.change.return_to(request)
        [bob] = item.change.dirty
        assert bob in request
        assert (bob.display_name, bob.row_version) == ("Bob again", 2)


def test_the_appender_applies_staged_changes_in_its_batches(
    db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    appender = Appender(lambda: Session(db.engine), log_key, engine=db.engine)
    appender.start()
    try:
        with Session(db.engine) as request:
            first = _staged_hold(request, _submission(actor, 20), 70, "p-1")
            second = _staged_hold(request, _submission(actor, 21), 70, "p-2")
            ok = appender.submit(first.submissions, first.change)
            poor = appender.submit(second.submissions, second.change)
        assert [a.index for a in ok.result(30)] == [0]
        with pytest.raises(InsufficientFundsError):
            poor.result(30)
    finally:
        appender.stop()
    assert appender.stats.records == 1 and appender.stats.rejected == 1
    assert _count(db, LogEntry) == 1
