"""The search index's own structures: the grams, the exactness of both full-text
indexes on awkward text, the facet counts and bitmaps the triggers keep (against
a recomputation), the same schema whether made by the migrations or at start-up,
and migration 0003 filling the new columns and indexes of rows already indexed."""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, Table, inspect, text
from sqlmodel import Session, SQLModel
from test_search_support import POSTGRES_URL, listing, search_database, seed, walk

from exchange import migrations
from exchange.db import make_engine
from exchange.listings.search import SearchParams, search
from exchange.listings.search.index import (
    facet_pairs,
    fold,
    grams,
    index_values,
    rebuild_facet_index,
)
from exchange.listings.search.terms import terms_of

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with search_database(request.param, tmp_path) as engine:
        yield engine


def test_grams_are_the_distinct_one_and_two_character_pieces_of_words() -> None:
    assert grams("ab c", "重庆").split() == sorted({"a", "ab", "b", "c", "重", "重庆", "庆"})
    assert grams("a\tb\x1fc\x7fd\u3000e") == "a b c d e"  # word breaks, as query terms split
    assert set(grams('"%_').split()) == {'"', "%", "_", '"%', "%_"}
    assert grams("") == "" and grams("   ") == ""


AWKWARD = [
    *'abcAB"\'%_\\*()-:^.,;!?#',
    "ß", "é", "e\u0301", "İ", "ı", "Σ", "σ", "ς", "K", "Å", "ﬁ", "Ⅻ", "ｆ",
    "重", "庆", "交", "通", "𠀀", "🙂", "\u200b", "Ꭰ", "ꭰ", " ",
]  # fmt: skip


def _awkward_rows(count: int) -> list[Any]:
    rng = random.Random(7)
    rows = []
    for n in range(count):
        text_of = "".join(rng.choices(AWKWARD, k=rng.randrange(1, 14)))
        rows.append(
            listing(
                n,
                title=text_of,
                description="".join(rng.choices(AWKWARD, k=rng.randrange(0, 30))),
                tags=["".join(rng.choices(AWKWARD, k=3)).strip() or "t"],
            )
        )
    return rows


def test_full_text_is_exact_on_awkward_text(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For 1-4 character terms of awkward characters (case pairs that fold alike or
    not, quotes, wildcards, combining marks, astral characters), the indexes find
    exactly the listings whose folded text contains the folded term."""
    rows = _awkward_rows(160)
    seed(engine, rows)
    docs = {
        row.id: "\n".join((fold(row.title), fold(" ".join(row.tags)), fold(row.description)))
        for row in rows
    }
    rng = random.Random(8)
    terms = {"".join(rng.choices(AWKWARD, k=rng.randrange(1, 5))) for _ in range(150)}
    terms |= {doc[i : i + 2] for doc in list(docs.values())[:40] for i in range(0, 6, 2)}
    for term in sorted(terms):
        folded = terms_of(term)
        if len(folded) != 1:
            continue  # spaces split it: more than one term
        expected = {listing_id for listing_id, doc in docs.items() if folded[0] in doc}
        pages = walk(engine, {"q": term, "limit": 100, "facets": False})
        assert pages[0]["total"] == len(expected), term
        assert {item["id"] for page in pages for item in page["items"]} == expected, term


def _expected_facets(connection: Any) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for category, classification, model, custody, computation, tags in connection.execute(
        text(
            "SELECT category, classification, pricing_model, custody, computation, tags "
            "FROM listing_search"
        )
    ):
        tags = json.loads(tags) if isinstance(tags, str) else tags
        for pair in facet_pairs(category, classification, model, custody, bool(computation), tags):
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _facet_table(connection: Any) -> dict[tuple[str, str], int]:
    rows = connection.execute(text("SELECT facet, value, listings FROM listing_search_facet"))
    return {(facet, value): listings for facet, value, listings in rows}


def _bitmaps(connection: Any) -> set[tuple[Any, ...]]:
    return set(
        connection.execute(text("SELECT facet, value, chunk, bits FROM listing_search_bitmap"))
    )


def test_triggers_keep_the_facet_counts(engine: Engine) -> None:
    """Inserts (one and many per statement), updates of facet columns (custody and
    computation alone too) and tags, other updates, deletes: the counts equal a
    recount and, on SQLite, the bitmaps equal a rebuild (whose blocks hold exactly
    each value's listings)."""
    rng = random.Random(9)
    rows = [
        listing(
            n,
            category=rng.choice(["a", "b", "交通"]),
            classification=rng.choice(["一般", "重要", None]),
            tags=rng.sample(["x", "y", "z z", "标签"], rng.randrange(0, 4)),
            custody=rng.choice(["provider", "exchange"]),
            computation=rng.choice([{"version": 1}, None]),
        )
        for n in range(300)
    ]
    seed(engine, rows[:250])
    values = index_values(rows[250])
    with engine.begin() as connection:
        connection.execute(SQLModel.metadata.tables["listing_search"].insert(), [values])
        ids = [i for (i,) in connection.execute(text("SELECT id FROM listing_search"))]
        table = SQLModel.metadata.tables["listing_search"]
        for listing_id in rng.sample(ids, 40):
            connection.execute(
                table.update()
                .where(table.c.id == listing_id)
                .values(
                    category=rng.choice(["a", "c"]),
                    classification=rng.choice(["重要", None]),
                    tags=rng.sample(["x", "new", "标签"], 2),
                )
            )
        for listing_id in rng.sample(ids, 40):  # custody or computation alone
            change: dict[str, Any] = rng.choice(
                [{"custody": "exchange"}, {"computation": True}, {"computation": False}]
            )
            connection.execute(table.update().where(table.c.id == listing_id).values(**change))
        connection.execute(text("UPDATE listing_search SET price_fen = price_fen + 1"))
        deleted = rng.sample(ids, 30)
        for listing_id in deleted[:10]:
            connection.execute(text("DELETE FROM listing_search WHERE id = :i"), {"i": listing_id})
        connection.execute(table.delete().where(table.c.id.in_(deleted[10:])))
    seed(engine, rows[251:])  # a far block of ids too
    with engine.begin() as connection:
        assert _facet_table(connection) == _expected_facets(connection)
        if engine.dialect.name == "sqlite":
            kept = _bitmaps(connection)
            rebuild_facet_index(connection)
            assert _bitmaps(connection) == kept
            assert _facet_table(connection) == _expected_facets(connection)
            members: dict[tuple[str, str], set[int]] = {}
            for facet, value, chunk, bits in kept:
                number = int(bits, 16)
                ids_of = {(chunk << 12) + b for b in range(4096) if number >> b & 1}
                members.setdefault((facet, value), set()).update(ids_of)
            for row_id, category in connection.execute(
                text("SELECT id, category FROM listing_search")
            ):
                assert row_id in members["category", category]
            every = len(ids) - len(deleted) + len(rows[251:])
            assert sum(len(m) for (f, _), m in members.items() if f == "category") == every


@contextmanager
def _empty(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty database on ``engine``'s backend: a new SQLite file, or ``engine``'s
    own PostgreSQL schema emptied."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            for name in inspect(connection).get_table_names():
                connection.exec_driver_sql(f'DROP TABLE "{name}" CASCADE')
            connection.exec_driver_sql("DROP FUNCTION IF EXISTS listing_search_facet_count()")
        yield engine
        return
    directory = tmp_path / "old"
    directory.mkdir()
    old = make_engine(f"sqlite:///{directory / 'old.db'}")
    try:
        yield old
    finally:
        old.dispose()


def _insert_as_at(connection: Any, name: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into table ``name`` as the database has it (the columns of a
    later revision left out)."""
    table = Table(name, MetaData(), autoload_with=connection)
    connection.execute(table.insert(), [{k: v for k, v in r.items() if k in table.c} for r in rows])


def test_migration_0003_indexes_rows_already_there(engine: Engine, tmp_path: Path) -> None:
    """Rows indexed before 0003 get their tags, grams, gram index entries and facet
    counts: short terms and facets then match the plain plan."""
    dialect = engine.dialect.name
    with _empty(engine, tmp_path) as old:
        migrations.upgrade(old, "0002")
        rows = [
            listing(n, title=f"{'重庆' if n % 3 else '成都'}数据 {n}", tags=["a", f"t{n % 4}"])
            for n in range(40)
        ]
        with old.begin() as connection:
            _insert_as_at(connection, "listing", [row.model_dump() for row in rows])
            _insert_as_at(connection, "listing_search", [index_values(row) for row in rows])
            connection.execute(
                SQLModel.metadata.tables["listing_search_tag"].insert(),
                [{"tag": tag, "listing_id": row.id} for row in rows for tag in row.tags],
            )
        migrations.upgrade(old)
        assert migrations.current(old) == migrations.head()
        with Session(old) as session:
            for q in ("庆", "重庆", "成都", "数据"):
                found = search(session, SearchParams(q=q, limit=50))
                expected = {r.id for r in rows if q in r.title}
                assert {item.id for item in found.items} == expected, q
                assert found.total == len(expected)
        whole = walk(old, {"limit": 50})[0]
        assert whole["total"] == 40
        assert {f["value"]: f["count"] for f in whole["facets"]["tags"]} == {
            "a": 40, "t0": 10, "t1": 10, "t2": 10, "t3": 10,
        }  # fmt: skip
        with old.begin() as connection:
            assert _facet_table(connection) == _expected_facets(connection)
            # the migration's own copy of the grams and of the facet rebuild (it is
            # frozen) gives what the live code gives
            by_id = {row.id: index_values(row) for row in rows}
            for listing_id, row_grams, row_gram_tt in connection.execute(
                text("SELECT listing_id, grams, gram_tt FROM listing_search")
            ):
                assert (row_grams, row_gram_tt) == (
                    by_id[listing_id]["grams"],
                    by_id[listing_id]["gram_tt"],
                )
            if dialect == "sqlite":
                migrated_bitmaps = _bitmaps(connection)
                rebuild_facet_index(connection)
                assert _bitmaps(connection) == migrated_bitmaps


def _search_triggers(engine: Engine) -> Any:
    """SQLite's trigger SQL, PostgreSQL's facet function: what 0007 replaces."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = (
                "SELECT proname, prosrc FROM pg_proc WHERE proname = 'listing_search_facet_count' "
                "AND pronamespace = current_schema()::regnamespace"
            )
        return sorted(connection.execute(text(query)).all())


def test_migration_0007_indexes_custody_and_computation_and_reverts(
    engine: Engine, tmp_path: Path
) -> None:
    """Rows indexed before 0007 get their listing's custody and whether it offers
    computations (an offer stored as SQL NULL or JSON null is none), counted in the
    facets (and SQLite's bitmaps) the triggers then keep; the filters match. The
    downgrade leaves the facets, triggers and columns as 0006 had them; upgrading
    again gives the same."""
    dialect = engine.dialect.name
    with _empty(engine, tmp_path) as old:
        migrations.upgrade(old, "0006")
        rows = [
            listing(
                n,
                category=f"c{n % 3}",
                tags=[f"t{n % 4}"],
                custody="exchange" if n % 4 == 0 else "provider",
                computation={"version": 1} if n % 3 == 0 else None,
            )
            for n in range(30)
        ]
        with old.begin() as connection:
            _insert_as_at(connection, "listing", [row.model_dump() for row in rows])
            _insert_as_at(connection, "listing_search", [index_values(row) for row in rows])
            _insert_as_at(
                connection,
                "listing_search_tag",
                [{"tag": tag, "listing_id": row.id} for row in rows for tag in row.tags],
            )
            # no offer, written either way
            connection.execute(
                text("UPDATE listing SET computation = NULL WHERE id = :i"), {"i": rows[1].id}
            )
            connection.execute(
                text("UPDATE listing SET computation = 'null' WHERE id = :i"), {"i": rows[2].id}
            )
            facets_0006 = _facet_table(connection)
        triggers_0006 = _search_triggers(old)

        migrations.upgrade(old)
        exchange_held = {r.id for r in rows if r.custody == "exchange"}
        offering = {r.id for r in rows if r.computation is not None}
        every = {r.id for r in rows}
        for params, expected in (
            ({"custody": "exchange"}, exchange_held),
            ({"custody": "provider"}, every - exchange_held),
            ({"computation": True}, offering),
            ({"computation": False, "custody": "provider"}, every - offering - exchange_held),
        ):
            pages = walk(old, {"limit": 100, **params})
            assert {item["id"] for item in pages[0]["items"]} == expected, params
        whole = walk(old, {"limit": 1})[0]["facets"]
        assert {f["value"]: f["count"] for f in whole["custody"]} == {"provider": 22, "exchange": 8}
        assert {f["value"]: f["count"] for f in whole["computation"]} == {"false": 20, "true": 10}
        seed(old, [listing(100, custody="exchange", computation={"version": 1})])
        with old.begin() as connection:
            connection.execute(
                text("UPDATE listing_search SET custody = 'exchange' WHERE listing_id = :i"),
                {"i": rows[5].id},
            )
            assert _facet_table(connection) == _expected_facets(connection)
            if dialect == "sqlite":
                kept = _bitmaps(connection)
                rebuild_facet_index(connection)
                assert _bitmaps(connection) == kept
        upgraded = _search_triggers(old)

        command.downgrade(migrations.make_config(old), "0006")
        assert migrations.current(old) == "0006"
        columns = {c["name"] for c in inspect(old).get_columns("listing_search")}
        assert not {"custody", "computation"} & columns
        assert _search_triggers(old) == triggers_0006
        with old.begin() as connection:
            after = _facet_table(connection)
        reverted = dict(facets_0006)  # and the listing added meanwhile
        for pair in (("category", "misc"), ("classification", "一般"), ("pricing_model", "free")):
            reverted[pair] = reverted.get(pair, 0) + 1
        assert after == reverted
        migrations.upgrade(old)
        assert _search_triggers(old) == upgraded
        with old.begin() as connection:
            assert _facet_table(connection) == _expected_facets(connection)


def test_migrations_0003_and_0007_import_no_live_code() -> None:
    """Migrations 0003 and 0007 are frozen: they import nothing from the exchange, so
    moving or changing live code can never change what an old migration does."""
    for name in ("0003_search_grams_facets.py", "0007_search_custody_computation.py"):
        _assert_frozen(Path(migrations.__file__).parent / "versions" / name)


def _assert_frozen(path: Path) -> None:
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.append(node.module)
    assert imported and not [m for m in imported if m.split(".")[0] in ("exchange", "ledger")]
