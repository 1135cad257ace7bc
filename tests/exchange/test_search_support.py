"""Helpers for the search plan and search index tests (no tests of its own): a
migrated database on SQLite or PostgreSQL (a throw-away schema), published
listings written straight into it (rows and index rows, no HTTP, as the API
benchmark seeds them), and a page-by-page run of a search."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Engine, insert
from sqlmodel import Session, SQLModel

from exchange.listings.models import Listing
from exchange.listings.search import SearchParams, index_values, search
from exchange.log.testing import isolated_database
from ledger.protocol.search import SearchPage

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
NOW = 1_790_000_000_000


@contextmanager
def search_database(backend: str, directory: Path) -> Iterator[Engine]:
    """An engine on a database migrated to head: a SQLite file in ``directory`` or,
    for ``postgresql``, a new schema of TEST_POSTGRES_URL (dropped afterwards)."""
    with isolated_database(POSTGRES_URL if backend == "postgresql" else None, directory) as db:
        yield db.engine


def listing(n: int, **fields: Any) -> Listing:
    """A published listing (``fields`` override the defaults)."""
    values: dict[str, Any] = {
        "id": str(uuid.UUID(int=random.Random(n).getrandbits(128), version=4)),
        "owner_key_id": f"{1 + n % 5:064x}",
        "state": "published",
        "title": f"listing {n}",
        "description": "",
        "category": "misc",
        "tags": [],
        "columns": [{"name": "value", "type": "integer"}],
        "sample_rows": [],
        "row_count": 1000 + n,
        "byte_size": 10_000 + n,
        "content_digest": "ab" * 32,
        "format": "csv",
        "update_frequency": "daily",
        "version": 1,
        "licence": "standard",
        "usage_terms": "",
        "pricing": {"model": "free"},
        "classification": "一般",
        "personal_information": False,
        "source_legality": "own collection",
        "permitted_purposes": ["research"],
        "created_at": NOW - n,
        "updated_at": NOW - n,
        "published_at": NOW - n,
    }
    values.update(fields)
    return Listing(**values)


def seed(engine: Engine, rows: list[Listing]) -> None:
    """Write published listings and their index rows in bulk (the triggers keep the
    full-text and facet indexes), then ANALYZE."""
    tables = SQLModel.metadata.tables
    with engine.begin() as connection:
        connection.execute(insert(tables["listing"]), [row.model_dump() for row in rows])
        connection.execute(
            insert(tables["listing_provider"]),
            [
                {
                    "listing_id": row.id,
                    "provider_key_id": row.owner_key_id,
                    "share_bps": 10_000,
                    "position": 0,
                }
                for row in rows
            ],
        )
        connection.execute(insert(tables["listing_search"]), [index_values(row) for row in rows])
        tag_rows = [
            {"tag": tag, "listing_id": row.id} for row in rows for tag in dict.fromkeys(row.tags)
        ]
        if tag_rows:
            connection.execute(insert(tables["listing_search_tag"]), tag_rows)
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


_PAGE = TypeAdapter(SearchPage)


def page_dict(page: SearchPage) -> dict[str, Any]:
    """A page as plain data (its JSON answer's form)."""
    data: dict[str, Any] = _PAGE.dump_python(page)
    return data


def walk(engine: Engine, params: dict[str, Any], pages: int = 200) -> list[dict[str, Any]]:
    """Every page of a search, following the cursors (each page in its own session,
    as requests are)."""
    found = []
    cursor = None
    for _ in range(pages):
        with Session(engine) as session:
            page = search(session, SearchParams(**params, cursor=cursor))
        found.append(page_dict(page))
        cursor = page.next_cursor
        if cursor is None:
            break
    return found
