"""End to end: after the demo's story in provider custody, the exchange holds no row of
the dataset beyond the listing's public sample.

The story runs on a real uvicorn + anvil with the provider agent as its own process,
on SQLite and on PostgreSQL (``TEST_POSTGRES_URL``). Then every file of the
exchange's data directory (the SQLite database and its journals, the content
directory with the deliverables, the devnet state) and, for PostgreSQL, every row of
every table (read through SQLAlchemy) is searched for each row of the dataset.

A row is recognised by its station id followed, within a few hundred bytes, by its
observation hour: the pair is unique per row and is ASCII, so it is found in a CSV
line, in JSON with or without escaped Chinese, in a Python repr or in raw bytes. The
scanner is itself tested on planted rows, so "nothing found" means something.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import JSON, Column, Integer, LargeBinary, MetaData, Table, select
from sqlalchemy.engine import Engine

from clients.demo import DEFAULT_SEED, SAMPLE_ROWS, Demo, demo_exchange, write_weather_csv
from exchange.books import assert_books_balance
from exchange.db import make_engine
from exchange.local_exchange import free_port, local_exchange
from exchange.log.testing import isolated_database

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROWS = 2_000
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")

RowKey = tuple[str, str]
"""A row's station id and observation hour (``YYYY-MM-DDTHH``): unique per row."""

_ROW_KEY = re.compile(rb"(CQ\d{5}).{0,400}?(\d{4}-\d\d-\d\d)[T ](\d\d):\d\d", re.DOTALL)


def _keys_in(blob: bytes) -> Iterator[RowKey]:
    for match in _ROW_KEY.finditer(blob):
        station, day, hour = (group.decode("ascii") for group in match.groups())
        yield station, f"{day}T{hour}"


def dataset_keys(csv_path: Path) -> list[RowKey]:
    """The key of every row of the dataset, in order."""
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    return [(row[0], row[3][:13]) for row in rows]


def leaked_rows(blobs: Iterable[tuple[str, bytes]], secret: set[RowKey]) -> dict[RowKey, str]:
    """The rows of ``secret`` found in ``blobs`` (where → bytes), and where."""
    found: dict[RowKey, str] = {}
    for where, blob in blobs:
        for key in _keys_in(blob):
            if key in secret:
                found.setdefault(key, where)
    return found


def directory_blobs(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root``, whatever it is."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield str(path), path.read_bytes()


def _cell(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False).encode()
    return str(value).encode()


def table_blobs(engine: Engine) -> Iterator[tuple[str, bytes]]:
    """Every row of every table of ``engine``'s (default) schema, its cells joined."""
    metadata = MetaData()
    metadata.reflect(engine)
    assert metadata.tables, "no tables: the dump would prove nothing"
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                yield table.name, b"\x1f".join(_cell(value) for value in row)


def _scan(demo: Demo, blobs: Iterable[tuple[str, bytes]]) -> tuple[set[RowKey], dict[RowKey, str]]:
    """(public sample rows seen, any other row of the dataset seen) in ``blobs``."""
    keys = dataset_keys(demo.csv_path)
    listing = demo.client("buyer_1").listing(demo.listing_id)
    public = set(_keys_in(json.dumps([dict(r) for r in listing.sample_rows]).encode()))
    assert len(public) == SAMPLE_ROWS and public == set(keys[:SAMPLE_ROWS])
    seen = list(blobs)
    return (
        set(leaked_rows(seen, public)),
        leaked_rows(seen, set(keys) - public),
    )


@contextmanager
def _story(exchange_dir: Path, work: Path, database_url: str | None = None) -> Iterator[Demo]:
    """The whole story told; the exchange and its agent still running."""
    with (
        demo_exchange(
            f"http://127.0.0.1:{free_port()}",
            exchange_dir,
            database_url=database_url,
            start_local=local_exchange,
        ) as target,
        Demo(target, work, rows=ROWS) as demo,
    ):
        result = demo.run()
        assert [(o["rows_ordered"], o["rows_delivered"]) for o in result.orders] == [
            (400, 400),
            (ROWS, ROWS),
        ]
        yield demo


def test_the_exchange_holds_no_row_beyond_the_sample_on_sqlite(tmp_path: Path) -> None:
    with _story(tmp_path / "exchange-side", tmp_path / "provider-and-buyers") as demo:
        data_dir = demo.exchange.data_dir
        assert data_dir is not None
        engine = make_engine(f"sqlite:///{data_dir / 'exchange.db'}")
        try:
            assert_books_balance(engine)
        finally:
            engine.dispose()
        assert list((data_dir / "content" / "deliverables").rglob("*.sm4s")), "no deliverables"
        public, leaked = _scan(demo, directory_blobs(data_dir))
    assert leaked == {}
    assert public, "the public sample is in the database: the scan reads it"


@pytest.mark.postgres
@pytest.mark.skipif(POSTGRES_URL is None, reason="TEST_POSTGRES_URL is not set")
def test_the_exchange_holds_no_row_beyond_the_sample_on_postgresql(tmp_path: Path) -> None:
    with (
        isolated_database(POSTGRES_URL, tmp_path) as database,
        _story(tmp_path / "exchange-side", tmp_path / "pb", database.url) as demo,
    ):
        data_dir = demo.exchange.data_dir
        assert data_dir is not None
        assert_books_balance(database.engine)
        public, leaked = _scan(demo, table_blobs(database.engine))
        _, leaked_in_files = _scan(demo, directory_blobs(data_dir))
    assert leaked == {}
    assert leaked_in_files == {}
    assert public == set(dataset_keys(demo.csv_path)[:SAMPLE_ROWS])


# --------------------------------------------------------------------------- the scanner


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    write_weather_csv(path, 100, DEFAULT_SEED)
    return path


def _line(csv_path: Path, row: int) -> list[str]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1 + row]


@pytest.mark.parametrize(
    "encode",
    [
        lambda cells: ",".join(cells).encode(),
        lambda cells: json.dumps(cells).encode(),  # Chinese escaped
        lambda cells: json.dumps(dict(enumerate(cells)), ensure_ascii=False).encode(),
        lambda cells: repr(tuple(cells)).encode(),
    ],
    ids=["csv", "json-ascii", "json-utf8", "repr"],
)
def test_the_scanner_finds_a_planted_row_in_a_file(
    dataset: Path, tmp_path: Path, encode: Callable[[list[str]], bytes]
) -> None:
    planted = tmp_path / "data" / "deep" / "blob.bin"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(os.urandom(4096) + encode(_line(dataset, 57)) + os.urandom(4096))
    (tmp_path / "data" / "sample.json").write_bytes(json.dumps(_line(dataset, 0)).encode())
    keys = dataset_keys(dataset)
    leaked = leaked_rows(directory_blobs(tmp_path / "data"), set(keys[SAMPLE_ROWS:]))
    assert leaked == {keys[57]: str(planted)}


def test_the_scanner_finds_a_planted_row_in_a_table(dataset: Path, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'planted.db'}")
    try:
        metadata = MetaData()
        table = Table(
            "planted",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("doc", JSON),
            Column("raw", LargeBinary),
        )
        metadata.create_all(engine)
        cells = _line(dataset, 42)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{"doc": {"row": cells}, "raw": b""}])
            connection.execute(table.insert(), [{"doc": {}, "raw": ",".join(cells).encode()}])
        keys = dataset_keys(dataset)
        leaked = leaked_rows(table_blobs(engine), set(keys[SAMPLE_ROWS:]))
    finally:
        engine.dispose()
    assert leaked == {keys[42]: "planted"}
