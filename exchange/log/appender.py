"""Group commit: many concurrent appends, one transaction, one signature, one fsync.

Request handlers parse and SM2-verify their records in worker threads (the
SM2 backend releases the GIL, so this runs on every CPU), then hand the
checked :class:`~exchange.log.service.Submission` s to the :class:`Appender`
and wait for the outcome. Its single committer thread takes what is queued
(up to ``max_batch`` records), and stores it with
:func:`~exchange.log.batch.commit_batch`: one exclusive transaction
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), a duplicate
check, consecutive indexes, ONE promise-batch signature, the inserts and one
durable commit; then it resolves every waiter. A duplicate fails only its own
submission (409 ``duplicate_record``).

Preparing. A handler prepares its submission inside :meth:`Appender.reserve`,
which admits at most ``verifiers`` (default: the CPU count) at a time. More
would not verify faster — SM2 verification is CPU-bound — but every extra
runnable thread competes for the GIL, and the committer, which gives the GIL
up at each database call and at the signature, would wait its turn behind
all of them each time it wants it back: with dozens of request threads a
transaction took several times longer.

Lingering. Once the first submission of a round is queued, the committer
waits up to ``linger`` seconds for more, but only while submissions are being
prepared (reserved and not yet submitted): a lone client is never delayed, a
busy server commits fewer, larger batches.

A submission may carry the state change staged for its records
(:mod:`exchange.records`): the committer applies it on its own session
inside the batch's transaction, in a savepoint, before the entries are
inserted (:func:`~exchange.log.batch.commit_batch`); a change refused there
fails only its own submission.

Several API processes on one database each run their own committer; the
database lock serialises their transactions, so indexes stay gap-free.

:meth:`Appender.stop` refuses new submissions (503 ``shutting_down``),
commits everything already queued, and joins the thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine

from exchange.errors import ExchangeError
from exchange.log.batch import Accepted, BatchItem, StagedChange, commit_batch
from exchange.log.errors import DuplicateRecordError
from exchange.log.sequencer import SessionFactory
from exchange.log.service import Submission
from ledger.sm2 import SM2PrivateKey

__all__ = [
    "DEFAULT_LINGER_S",
    "DEFAULT_MAX_BATCH",
    "Appender",
    "AppenderStats",
    "LogUnavailableError",
    "Reservation",
    "ShuttingDownError",
    "running_appender",
]

DEFAULT_MAX_BATCH = 1000
DEFAULT_LINGER_S = 0.002

logger = logging.getLogger(__name__)


class ShuttingDownError(ExchangeError):
    """The appender is stopping (the server is shutting down): retry elsewhere or later."""

    status = 503
    code = "shutting_down"


class LogUnavailableError(ExchangeError):
    """The appender has not been started (the app's lifespan did not run)."""

    status = 503
    code = "log_unavailable"


_RUNNING: dict[Engine, Appender] = {}
"""The started appender of each engine (one per app; see :func:`running_appender`)."""


def running_appender(engine: Engine) -> Appender | None:
    """The appender started for ``engine`` in this process, if any (still
    stopping counts: it refuses new submissions with 503 ``shutting_down``)."""
    return _RUNNING.get(engine)


@dataclass(eq=False, slots=True)
class _Item:
    submissions: Sequence[Submission]
    change: StagedChange | None = None
    future: Future[list[Accepted]] = field(default_factory=Future)


@dataclass(slots=True)
class AppenderStats:
    """What the committer has done so far (for tests and benchmarks)."""

    transactions: int = 0
    """Committed transactions (each signs one promise batch per 1024 records stored)."""
    records: int = 0
    """Records stored."""
    refused: int = 0
    """Submissions refused as duplicates."""
    rejected: int = 0
    """Submissions whose staged state change was refused (rolled back alone)."""
    failed: int = 0
    """Transactions that failed (every submission in them got the error)."""
    largest: int = 0
    """Most records in one transaction."""


class Reservation:
    """A submission announced to the :class:`Appender` (see :meth:`Appender.reserve`)."""

    __slots__ = ("_appender", "used")

    def __init__(self, appender: Appender) -> None:
        self._appender = appender
        self.used = False

    def submit(self, submissions: Sequence[Submission]) -> Future[list[Accepted]]:
        """Queue the announced submission; like :meth:`Appender.submit`. Once only."""
        if self.used:
            raise RuntimeError("a reservation submits once")
        self.used = True
        return self._appender._enqueue(submissions, reserved=True)


class Appender:
    """The group-commit queue and its committer thread (see the module docstring).

    ``max_batch`` bounds the records of one transaction (a single submission
    larger than that is committed alone); ``linger`` is the most seconds the
    committer waits for announced submissions before it commits. With
    ``engine`` (the one ``session_factory`` opens), a started appender is the
    write path of every signed action on that engine in this process
    (:func:`running_appender`, :func:`exchange.records.commit_with_records`).
    ``on_batch`` is told the records each committed transaction stored (metrics).
    """

    name = "appender"

    def __init__(
        self,
        session_factory: SessionFactory,
        log_key: SM2PrivateKey,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        linger: float = DEFAULT_LINGER_S,
        verifiers: int | None = None,
        engine: Engine | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if linger < 0:
            raise ValueError(f"linger must be >= 0, got {linger}")
        if verifiers is not None and verifiers < 1:
            raise ValueError(f"verifiers must be >= 1, got {verifiers}")
        self._session_factory = session_factory
        self._log_key = log_key
        self.max_batch = max_batch
        self.linger = linger
        self.verifiers = verifiers or os.cpu_count() or 1
        self._slots = threading.BoundedSemaphore(self.verifiers)
        self.stats = AppenderStats()
        self._cond = threading.Condition()
        self._items: deque[_Item] = deque()
        self._queued_records = 0
        self._announced = 0
        self._state = "new"  # new -> running -> stopping -> stopped
        self._thread: threading.Thread | None = None
        self._engine = engine
        self._on_batch = on_batch

    # -- lifecycle -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == "running"

    def start(self) -> None:
        with self._cond:
            if self._state != "new":
                raise RuntimeError(f"the appender cannot start when {self._state}")
            self._state = "running"
        if self._engine is not None:
            _RUNNING.setdefault(self._engine, self)
        self._thread = threading.Thread(target=self._run, name="log-appender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Refuse new submissions, commit those already queued, join the committer."""
        with self._cond:
            if self._state in ("new", "stopped"):
                self._state = "stopped"
                return
            self._state = "stopping"
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._cond:
            self._state = "stopped"
        if self._engine is not None and _RUNNING.get(self._engine) is self:
            del _RUNNING[self._engine]

    # -- submitting ----------------------------------------------------------------

    @contextmanager
    def reserve(self) -> Iterator[Reservation]:
        """Prepare (parse, verify) a submission in this block and submit it with
        the yielded :class:`Reservation` (or not at all, on error).

        Waits while ``verifiers`` other threads are preparing (so: call it from a
        worker thread, never on an event loop); then announces the submission,
        so that the committer lingers for it. Raises :class:`ShuttingDownError` /
        :class:`LogUnavailableError` (503) when the appender does not take
        submissions."""
        with self._cond:
            self._check_open()
        with self._slots:
            with self._cond:
                self._check_open()
                self._announced += 1
            reservation = Reservation(self)
            try:
                yield reservation
            finally:
                if not reservation.used:
                    with self._cond:
                        self._announced -= 1
                        self._wake_committer()

    def submit(
        self, submissions: Sequence[Submission], change: StagedChange | None = None
    ) -> Future[list[Accepted]]:
        """Queue checked submissions, to be stored together (all or nothing) at
        consecutive indexes, with the state ``change`` staged for them (or a
        ``change`` alone, with no submissions: it rides in the next batch)
        (:func:`exchange.log.batch.take_staged`). The future resolves to their
        entries and promises, or raises :class:`DuplicateRecordError` (409; one
        of them is already in the log), the change's refusal, or the
        transaction's error (e.g. ``LogBusyError``, 503).

        Raises :class:`ShuttingDownError` / :class:`LogUnavailableError` (503) at
        once when the appender does not take submissions."""
        return self._enqueue(submissions, reserved=False, change=change)

    async def append(self, submissions: Sequence[Submission]) -> list[Accepted]:
        """:meth:`submit` and await the outcome without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(submissions))

    def _enqueue(
        self,
        submissions: Sequence[Submission],
        *,
        reserved: bool,
        change: StagedChange | None = None,
    ) -> Future[list[Accepted]]:
        if not submissions and change is None:
            raise ValueError("nothing to submit")
        item = _Item(list(submissions), change)
        with self._cond:
            if reserved:
                self._announced -= 1
            try:
                self._check_open()
                self._items.append(item)
                self._queued_records += len(item.submissions)
            finally:
                self._wake_committer()
        return item.future

    def _wake_committer(self) -> None:
        """Notify the committer (holding ``_cond``) only when what it waits for may
        have come: a first item, the end of the announced submissions, a full batch.
        Waking it at every submission would make it take the GIL back per record."""
        if len(self._items) == 1 or self._announced == 0 or self._queued_records >= self.max_batch:
            self._cond.notify()

    def _check_open(self) -> None:
        if self._state == "new":
            raise LogUnavailableError("the log appender is not running")
        if self._state != "running":
            raise ShuttingDownError("the exchange is shutting down; retry in a moment")

    # -- the committer -------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._commit(batch)

    def _next_batch(self) -> list[_Item] | None:
        """Wait for the next round's items; ``None`` once stopping and drained."""
        with self._cond:
            while not self._items and self._state == "running":
                self._cond.wait()
            if not self._items:
                return None
            deadline = time.monotonic() + self.linger
            while (
                self._announced > 0
                and self._state == "running"
                and self._queued_records < self.max_batch
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._items.popleft()]
            count = len(batch[0].submissions)
            while self._items and count + len(self._items[0].submissions) <= self.max_batch:
                item = self._items.popleft()
                batch.append(item)
                count += len(item.submissions)
            self._queued_records -= count
            return batch

    def _commit(self, batch: list[_Item]) -> None:
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            with self._session_factory() as session:
                session.expire_on_commit = False  # the rows go back to their requests
                outcomes = commit_batch(
                    session,
                    [BatchItem(item.submissions, item.change) for item in live],
                    self._log_key,
                )
        except Exception as exc:
            self.stats.failed += 1
            if isinstance(exc, ExchangeError):
                logger.warning("append transaction failed: %s", exc.message)
            else:
                logger.exception("append transaction failed")
            for item in live:
                item.future.set_exception(exc)
            return
        stored = 0
        for item, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Exception):
                if isinstance(outcome, DuplicateRecordError):
                    self.stats.refused += 1
                else:
                    self.stats.rejected += 1
                if not item.submissions:  # (its submitter does not wait for the outcome)
                    logger.warning("a change queued without records was refused: %r", outcome)
                item.future.set_exception(outcome)
            else:
                stored += len(outcome)
                item.future.set_result(outcome)
        self.stats.transactions += 1
        self.stats.records += stored
        self.stats.largest = max(self.stats.largest, stored)
        if self._on_batch is not None:
            self._on_batch(stored)
