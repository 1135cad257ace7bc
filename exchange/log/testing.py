"""Helpers for tests and benchmarks of the log: isolated databases, worker processes.

:func:`isolated_database` gives a fresh log database on SQLite (a file) or on
PostgreSQL (a throw-away schema, dropped afterwards, so that tests sharing
one server do not see each other). Its URL can be handed to other processes.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from exchange.db import make_engine
from exchange.log.models import create_log_tables
from exchange.log.sequencer import SessionFactory

__all__ = ["LogDatabase", "append_worker", "isolated_database"]


@dataclass(frozen=True)
class LogDatabase:
    url: str
    engine: Engine

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def session_factory(self) -> SessionFactory:
        return functools.partial(Session, self.engine)


@contextmanager
def isolated_database(postgres_url: str | None, directory: Path) -> Iterator[LogDatabase]:
    """A fresh database with the log's tables: PostgreSQL when ``postgres_url`` is
    given (in a new schema), else a SQLite file in ``directory``."""
    if postgres_url is None:
        url = f"sqlite:///{directory / 'log.db'}"
        engine = make_engine(url)
        try:
            create_log_tables(engine)
            yield LogDatabase(url, engine)
        finally:
            engine.dispose()
        return
    schema = f"log_test_{secrets.token_hex(6)}"
    admin = make_engine(postgres_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = (
            make_url(postgres_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
        engine = make_engine(url)
        try:
            create_log_tables(engine)
            yield LogDatabase(url, engine)
        finally:
            engine.dispose()
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def append_worker(
    url: str,
    log_key_pem: bytes,
    count: int,
    barrier: Any,
    results: Any,
    batch: int = 1,
    threads: int = 0,
) -> None:
    """Body of a worker process: wait at ``barrier``, append ``count`` records, put
    ``[(index, promise_dict), ...]`` on ``results``.

    With ``threads == 0`` the records go one by one through ``append`` (or
    ``batch`` at a time through ``append_many``). With ``threads > 0`` that many
    threads of this process verify their records and submit them, ``batch`` per
    submission, to one :class:`~exchange.log.appender.Appender` (group commit),
    as the API's request handlers do.
    """
    from concurrent.futures import ThreadPoolExecutor

    from exchange.log.appender import Appender
    from exchange.log.service import append, append_many, check_submission
    from ledger.records import sign_record
    from ledger.sm2 import SM2PrivateKey

    log_key = SM2PrivateKey.from_pem(log_key_pem)
    actor = SM2PrivateKey.generate()
    signed = [
        sign_record(actor, "test.appended", {"n": n, "nonce": secrets.token_hex(8)})
        for n in range(count)
    ]
    chunks = [signed[begin : begin + batch] for begin in range(0, count, batch)]
    engine = make_engine(url)
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        if threads > 0:
            appender = Appender(functools.partial(Session, engine), log_key)
            appender.start()

            def submit(chunk: list[Any]) -> list[tuple[int, dict[str, Any]]]:
                with appender.reserve() as reservation:
                    checked = [check_submission(s, actor.public_key()) for s in chunk]
                    future = reservation.submit(checked)
                return [(a.index, a.promise.to_dict()) for a in future.result()]

            barrier.wait()
            try:
                with ThreadPoolExecutor(threads) as pool:
                    for done in pool.map(submit, chunks):
                        out.extend(done)
            finally:
                appender.stop()
            return
        barrier.wait()
        for chunk in chunks:
            with Session(engine) as session:
                if batch == 1:
                    entry, promise = append(session, chunk[0], actor.public_key(), log_key)
                    out.append((entry.index, promise.to_dict()))
                else:
                    accepted = append_many(
                        session, [(s, actor.public_key()) for s in chunk], log_key
                    )
                    out.extend((a.index, a.promise.to_dict()) for a in accepted)
    finally:
        engine.dispose()
        results.put(out)
