"""The Appender: group commit of concurrent appends (one transaction, one promise-batch
signature, one durable commit), per-submission duplicates, lingering, shutdown."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from exchange.log.appender import Appender, LogUnavailableError, ShuttingDownError
from exchange.log.errors import DuplicateRecordError
from exchange.log.models import LogEntry, PromiseBatchRow
from exchange.log.queries import promise_of
from exchange.log.service import Accepted, Submission, check_submission
from exchange.log.testing import LogDatabase, isolated_database
from ledger.records import sign_record
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


def _submission(actor: SM2PrivateKey, n: int) -> Submission:
    signed = sign_record(actor, "order.placed", {"order": f"o-{n}", "amount_fen": n})
    return check_submission(signed, actor.public_key())


def _count(db: LogDatabase, table: type[LogEntry] | type[PromiseBatchRow]) -> int:
    with Session(db.engine) as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


class GatedFactory:
    """A session factory whose first ``hold`` calls wait for :meth:`release`, so a
    test can keep the committer busy while it queues more."""

    def __init__(self, db: LogDatabase, hold: int = 1) -> None:
        self._factory = db.session_factory()
        self._gate = threading.Event()
        self.entered = threading.Event()
        self._hold = hold
        self.calls = 0

    def __call__(self) -> Session:
        self.calls += 1
        if self.calls <= self._hold:
            self.entered.set()
            assert self._gate.wait(30), "the test never released the committer"
        return self._factory()

    def release(self) -> None:
        self._gate.set()


@pytest.fixture
def running() -> Iterator[Callable[[Appender], Appender]]:
    """Start appenders; stop whichever are still running at the end of the test."""
    started: list[Appender] = []

    def start(appender: Appender) -> Appender:
        appender.start()
        started.append(appender)
        return appender

    yield start
    for appender in started:
        appender.stop()


def test_concurrent_submitters_are_committed_together(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    running: Callable[[Appender], Appender],
) -> None:
    appender = running(Appender(log_db.session_factory(), log_key, linger=0.005))
    threads, per_thread = 8, 25

    def submitter(t: int) -> list[Accepted]:
        out: list[Accepted] = []
        for n in range(per_thread):
            with appender.reserve() as reservation:  # as the API: verify, then submit
                submission = _submission(actor, t * 1000 + n)
                future = reservation.submit([submission])
            out += future.result(timeout=60)
        return out

    with ThreadPoolExecutor(threads) as pool:
        accepted = [a for done in pool.map(submitter, range(threads)) for a in done]

    total = threads * per_thread
    assert sorted(a.index for a in accepted) == list(range(total))
    public = log_key.public_key()
    for a in accepted:
        a.promise.verify(public)
    stats = appender.stats
    assert stats.records == total and stats.refused == 0 and stats.failed == 0
    assert stats.transactions == _count(log_db, PromiseBatchRow)
    assert stats.transactions < total  # group commit happened
    assert stats.largest > 1
    with Session(log_db.engine) as session:  # served later exactly as given
        for a in accepted[:: total // 10]:
            entry = session.get(LogEntry, a.index)
            assert entry is not None
            assert promise_of(session, entry) == a.promise


def test_a_duplicate_fails_only_its_own_submission(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    running: Callable[[Appender], Appender],
) -> None:
    """Within one committed batch: the second copy of a record (alone, or inside a
    multi-record submission) and a record already in the log are refused; the
    other submissions of the batch are stored."""
    appender = running(Appender(log_db.session_factory(), log_key, linger=10.0))
    stored_before = _submission(actor, 0)
    appender.submit([stored_before]).result(timeout=30)
    a, b, c, d = (_submission(actor, n) for n in range(1, 5))
    # An announced submission makes the committer linger (up to 10 s) until it
    # arrives, so everything below lands in one transaction.
    with appender.reserve() as reservation:
        futures = [
            appender.submit([a]),
            appender.submit([a]),  # the same record again
            appender.submit([b, a]),  # a multi-record submission holding it
            appender.submit([stored_before]),  # already in the log
            appender.submit([c]),
        ]
        futures.append(reservation.submit([d]))
    outcomes: list[list[Accepted] | BaseException] = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=30))
        except DuplicateRecordError as exc:
            outcomes.append(exc)

    first, again, multi, old, third, last = outcomes
    assert isinstance(first, list) and isinstance(third, list) and isinstance(last, list)
    assert [x.index for x in first + third + last] == [1, 2, 3]
    for refused in (again, multi, old):
        assert isinstance(refused, DuplicateRecordError) and refused.status == 409
    assert isinstance(again, DuplicateRecordError) and "at index 1" in again.message
    assert isinstance(multi, DuplicateRecordError) and multi.message.startswith("records[1]:")
    assert isinstance(old, DuplicateRecordError) and "at index 0" in old.message
    assert appender.stats.transactions == 2  # the first append, then one for the rest
    assert appender.stats.refused == 3
    assert {x.promise.batch_first_index for x in first + third + last} == {1}
    assert _count(log_db, LogEntry) == 4


def test_the_committer_does_not_linger_for_a_lone_submitter(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    running: Callable[[Appender], Appender],
) -> None:
    appender = running(Appender(log_db.session_factory(), log_key, linger=5.0))
    started = time.monotonic()
    for n in range(3):
        with appender.reserve() as reservation:
            future = reservation.submit([_submission(actor, n)])
        future.result(timeout=30)
    assert time.monotonic() - started < 4.0  # never waited out the 5 s linger
    assert appender.stats.transactions == 3


def test_reserve_admits_only_as_many_preparers_as_verifiers(
    log_db: LogDatabase, log_key: SM2PrivateKey, running: Callable[[Appender], Appender]
) -> None:
    appender = running(Appender(log_db.session_factory(), log_key, verifiers=2))
    inside = threading.Semaphore(0)
    leave = threading.Event()
    peak = {"now": 0, "max": 0}
    lock = threading.Lock()

    def preparer() -> None:
        with appender.reserve():
            with lock:
                peak["now"] += 1
                peak["max"] = max(peak["max"], peak["now"])
            inside.release()
            assert leave.wait(30)
            with lock:
                peak["now"] -= 1
        # (nothing submitted: an abandoned reservation frees its slot too)

    threads = [threading.Thread(target=preparer) for _ in range(5)]
    for thread in threads:
        thread.start()
    assert inside.acquire(timeout=10) and inside.acquire(timeout=10)
    assert not inside.acquire(timeout=0.2)  # the third waits for a slot
    assert peak["max"] == 2
    leave.set()
    for thread in threads:
        thread.join(10)
    assert peak["max"] == 2 and peak["now"] == 0
    assert appender._announced == 0


def test_max_batch_bounds_a_transaction(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    running: Callable[[Appender], Appender],
) -> None:
    gated = GatedFactory(log_db)
    appender = running(Appender(gated, log_key, max_batch=3, linger=0))
    first = appender.submit([_submission(actor, 0)])
    assert gated.entered.wait(10)
    singles = [appender.submit([_submission(actor, n)]) for n in range(1, 8)]
    big = appender.submit([_submission(actor, n) for n in range(10, 15)])
    gated.release()
    results = [f.result(timeout=30) for f in [first, *singles, big]]
    assert sorted(a.index for r in results for a in r) == list(range(13))
    assert [a.index for a in results[-1]] == list(range(8, 13))  # alone, all together
    stats = appender.stats
    assert stats.largest == 5  # the oversized submission, committed alone
    # 1 + ceil(7 / 3) transactions for the singles, 1 for the big one
    assert stats.transactions == 5


def test_stop_commits_what_is_queued_and_refuses_new_submissions(
    log_db: LogDatabase, log_key: SM2PrivateKey, actor: SM2PrivateKey
) -> None:
    gated = GatedFactory(log_db)
    appender = Appender(gated, log_key)
    with pytest.raises(LogUnavailableError) as not_started:
        appender.submit([_submission(actor, 0)])
    assert (not_started.value.status, not_started.value.code) == (503, "log_unavailable")
    appender.start()
    queued = [appender.submit([_submission(actor, n)]) for n in range(6)]
    assert gated.entered.wait(10)  # the committer holds the first, the rest wait
    stopper = threading.Thread(target=appender.stop)
    stopper.start()
    deadline = time.monotonic() + 10
    while appender.running:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with pytest.raises(ShuttingDownError) as refused:
        appender.submit([_submission(actor, 99)])
    assert (refused.value.status, refused.value.code) == (503, "shutting_down")
    with pytest.raises(ShuttingDownError), appender.reserve():
        pass
    gated.release()
    stopper.join(30)
    assert not stopper.is_alive()
    assert sorted(a.index for f in queued for a in f.result(timeout=0)) == list(range(6))
    assert _count(log_db, LogEntry) == 6
    appender.stop()  # idempotent


def test_a_failed_transaction_fails_its_batch_and_the_appender_goes_on(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    running: Callable[[Appender], Appender],
) -> None:
    gated = GatedFactory(log_db)
    database_down = threading.Event()
    database_down.set()

    def factory() -> Session:
        session = gated()
        if database_down.is_set():
            session.close()
            raise RuntimeError("database down")
        return session

    appender = running(Appender(factory, log_key))
    futures = [appender.submit([_submission(actor, n)]) for n in range(3)]
    assert gated.entered.wait(10)
    gated.release()
    for future in futures:  # every waiter of the failed transaction(s) gets the error
        with pytest.raises(RuntimeError, match="database down"):
            future.result(timeout=30)
    assert appender.stats.failed >= 1 and appender.stats.records == 0
    database_down.clear()
    [later] = appender.submit([_submission(actor, 7)]).result(timeout=30)
    assert later.index == 0  # nothing of the failed transactions was stored
    assert _count(log_db, LogEntry) == 1


def test_a_cancelled_submission_is_not_stored(
    log_db: LogDatabase,
    log_key: SM2PrivateKey,
    actor: SM2PrivateKey,
    running: Callable[[Appender], Appender],
) -> None:
    gated = GatedFactory(log_db)
    appender = running(Appender(gated, log_key))
    first = appender.submit([_submission(actor, 0)])
    assert gated.entered.wait(10)
    cancelled: Future[list[Accepted]] = appender.submit([_submission(actor, 1)])
    kept = appender.submit([_submission(actor, 2)])
    assert cancelled.cancel()
    gated.release()
    assert first.result(timeout=30)[0].index == 0
    assert kept.result(timeout=30)[0].index == 1
    with pytest.raises(CancelledError):
        cancelled.result(timeout=0)
    assert _count(log_db, LogEntry) == 2


def test_settings_are_validated(log_db: LogDatabase, log_key: SM2PrivateKey) -> None:
    with pytest.raises(ValueError):
        Appender(log_db.session_factory(), log_key, max_batch=0)
    with pytest.raises(ValueError):
        Appender(log_db.session_factory(), log_key, linger=-1)
    with pytest.raises(ValueError):
        Appender(log_db.session_factory(), log_key, verifiers=0)
    assert Appender(log_db.session_factory(), log_key).verifiers == (os.cpu_count() or 1)
    appender = Appender(log_db.session_factory(), log_key)
    appender.start()
    try:
        with pytest.raises(RuntimeError):
            appender.start()
        with pytest.raises(ValueError):
            appender.submit([])
    finally:
        appender.stop()
