"""Helpers for tests and benchmarks: isolated databases, worker processes.

:func:`isolated_database` gives a fresh database migrated to head (the
exchange's whole schema, made by the Alembic migrations as at start-up) on
SQLite (a file) or on PostgreSQL (a throw-away schema, dropped afterwards, so
that tests sharing one server do not see each other). Its URL can be handed to
other processes. SQLite files are copies of one template this process migrates
once (:func:`migrated_sqlite`); each PostgreSQL schema is migrated afresh.
"""

from __future__ import annotations

import atexit
import functools
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from exchange import migrations
from exchange.db import make_engine
from exchange.log.sequencer import SessionFactory

__all__ = [
    "LogDatabase",
    "append_worker",
    "isolated_database",
    "migrated_sqlite",
    "postgres_schema",
]


@dataclass(frozen=True)
class LogDatabase:
    url: str
    engine: Engine

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def session_factory(self) -> SessionFactory:
        return functools.partial(Session, self.engine)


def migrated_sqlite(path: Path) -> str:
    """Make ``path`` a SQLite database at head; its URL."""
    shutil.copyfile(_sqlite_template(), path)
    return f"sqlite:///{path}"


@functools.cache
def _sqlite_template() -> Path:
    directory = tempfile.mkdtemp(prefix="shancheng-schema-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = Path(directory) / "head.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


@contextmanager
def isolated_database(postgres_url: str | None, directory: Path) -> Iterator[LogDatabase]:
    """A fresh database migrated to head: PostgreSQL when ``postgres_url`` is given
    (in a new schema), else a SQLite file in ``directory``."""
    with _migrated_url(postgres_url, directory) as url:
        engine = make_engine(url)
        try:
            yield LogDatabase(url, engine)
        finally:
            engine.dispose()


@contextmanager
def _migrated_url(postgres_url: str | None, directory: Path) -> Iterator[str]:
    if postgres_url is None:
        yield migrated_sqlite(directory / "log.db")
        return
    with postgres_schema(postgres_url, "log_test_") as url:
        migrations.upgrade(url)
        yield url


@contextmanager
def postgres_schema(postgres_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty schema of ``postgres_url`` (``prefix`` + random hex,
    dropped with everything in it afterwards).

    ``pg_trgm`` is made in ``public`` first when the server has it nowhere: made by a
    migration it would land in the new schema, and dropping that would take it (and
    the trigram indexes of every other schema) away while other tests use them."""
    schema = f"{prefix}{secrets.token_hex(6)}"
    admin = make_engine(postgres_url)
    try:
        _keep_pg_trgm_in_public(admin)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield (
                make_url(postgres_url)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def _keep_pg_trgm_in_public(admin: Engine) -> None:
    try:
        with admin.begin() as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
    except DBAPIError:
        pass  # not allowed, or made at this moment by another run: as the migration does


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
