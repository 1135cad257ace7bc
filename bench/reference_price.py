"""Cost of a listing's reference price at 100k settled orders beside 1k, in the same run.

Run: ``.venv/bin/python bench/reference_price.py [--orders 100000] [--rounds 50]``.

Two SQLite databases (migrated to head, in a temporary directory) are seeded with
1,000 and ``--orders`` settled deals, all in the priced listing's category and
pricing unit and inside the market method's window (the worst case: every deal is
a candidate comparable). Seeding is a bulk insert straight into ``log_entry``
(one ``settlement.paid``-like entry per deal, one promise batch), ``reference_deal``
and ``listing`` — not orders through the API, which would take hours; the rows
are what settlement stages (exchange/refprice/deals.py). Each round then times
``exchange.refprice.service.listing_reference_price`` in a fresh session: the log
size, the listing, the newest 50 comparables through the
``(category, unit, settled_at)`` index joined to their log entries, and the pure
arithmetic. Also timed: ``SELECT count(*)`` over the same deals (what any scan of
them costs). Figures are medians; the two databases take turns round by round.

The last lines are ``figure <name> <value> <unit>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select
from sqlmodel import Session

from exchange.db import make_engine
from exchange.listings.models import Listing
from exchange.log.models import log_entry_table, promise_batch_table
from exchange.migrations import upgrade
from exchange.refprice.models import ReferenceDeal
from exchange.refprice.service import listing_reference_price
from ledger.pricing_reference import DAY_MS, WINDOW_MS

SUBJECT = "00000000-0000-4000-8000-000000000000"
NOW = 1_800_000_000_000
CHUNK = 10_000


def _listing(listing_id: str) -> dict[str, object]:
    return {
        "id": listing_id,
        "owner_key_id": "a" * 64,
        "state": "published",
        "title": "t",
        "description": "",
        "category": "transport",
        "tags": [],
        "columns": [],
        "sample_rows": [],
        "row_count": 1,
        "byte_size": 1,
        "content_digest": "0" * 64,
        "format": "csv",
        "update_frequency": "monthly",
        "version": 1,
        "usage_terms": "",
        "pricing": {"model": "fixed", "price": 15_000},
        "permitted_purposes": [],
        "created_at": NOW,
        "updated_at": NOW,
        "cost_basis": {"other_fen": 1_000_000, "expected_units": 100, "margin_bp": 2_000},
        "custody": "provider",
        "delivery_window_s": 86_400,
        "row_version": 1,
    }


def seed(url: str, orders: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(Listing.__table__), [_listing(SUBJECT)])  # type: ignore[attr-defined]
        connection.execute(
            insert(promise_batch_table),
            [
                {
                    "first_index": 0,
                    "size": orders + 1,
                    "batch_root": b"\0" * 32,
                    "timestamp": NOW,
                    "log_key_id": "b" * 64,
                    "signature": b"\0",
                }
            ],
        )
        for start in range(0, orders, CHUNK):
            indexes = range(start, min(start + CHUNK, orders))
            connection.execute(
                insert(log_entry_table),
                [
                    {
                        "index": i,
                        "leaf_hash": i.to_bytes(32, "big"),
                        "leaf": b"{}",
                        "record_type": "settlement.paid",
                        "actor_key_id": "b" * 64,
                        "actor_public_key": "",
                        "batch_first_index": 0,
                    }
                    for i in indexes
                ],
            )
            connection.execute(
                insert(ReferenceDeal.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "order_id": f"{i:08d}-0000-4000-8000-000000000000",
                        "listing_id": f"{i % 500:08d}-1111-4000-8000-000000000000",
                        "version": 1,
                        "category": "transport",
                        "unit": "order",
                        "unit_price_fen": 10_000 + (i * 7919) % 10_000,
                        "settled_at": NOW - (i * 7) % (WINDOW_MS - DAY_MS),
                        "update_frequency": "monthly",
                        "settled_leaf_hash": i.to_bytes(32, "big"),
                    }
                    for i in indexes
                ],
            )
        connection.execute(
            insert(log_entry_table),
            [
                {
                    "index": orders,
                    "leaf_hash": b"\xff" * 32,
                    "leaf": b"{}",
                    "record_type": "note.x",
                    "actor_key_id": "b" * 64,
                    "actor_public_key": "",
                    "batch_first_index": 0,
                }
            ],
        )
    engine.dispose()


def measure(urls: dict[int, str], rounds: int) -> dict[int, tuple[float, float]]:
    """Per database: median ms of the reference price, and of ``SELECT count(*)`` over
    its deals. The databases take turns, round by round, so that both see the same
    load from whatever else runs on the machine, each first in every other round."""
    engines = {orders: make_engine(url) for orders, url in urls.items()}
    priced: dict[int, list[float]] = {orders: [] for orders in urls}
    counted: dict[int, list[float]] = {orders: [] for orders in urls}
    for round_ in range(rounds):
        turns = list(engines.items())
        if round_ % 2:  # whichever goes first in a round is slower: alternate
            turns.reverse()
        for orders, engine in turns:
            with Session(engine) as session:
                started = time.perf_counter()
                answer = listing_reference_price(session, SUBJECT, None)
                priced[orders].append(time.perf_counter() - started)
            assert answer["market"]["status"] == "ok", answer["market"]["status"]
            assert len(answer["market"]["comparables"]) == 50
            with Session(engine) as session:
                started = time.perf_counter()
                session.execute(select(func.count()).select_from(ReferenceDeal)).scalar_one()
                counted[orders].append(time.perf_counter() - started)
    for engine in engines.values():
        engine.dispose()
    return {
        orders: (
            statistics.median(priced[orders]) * 1000,
            statistics.median(counted[orders]) * 1000,
        )
        for orders in urls
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {}
        for orders in (1_000, args.orders):
            urls[orders] = f"sqlite:///{tmp}/bench-{orders}.db"
            started = time.perf_counter()
            seed(urls[orders], orders)
            print(f"{orders:>7} settled deals seeded in {time.perf_counter() - started:.1f} s")
        figures = measure(urls, args.rounds)
    for orders, (priced, counted) in figures.items():
        print(
            f"{orders:>7} settled deals: reference price {priced:.2f} ms, "
            f"SELECT count(*) {counted:.2f} ms (medians of {args.rounds})"
        )
    at_100k, at_1k = figures[args.orders][0], figures[1_000][0]
    print(f"figure reference_price_ms_at_100k {at_100k:.2f} ms")
    print(f"figure reference_price_100k_vs_1k {at_100k / at_1k:.2f} x")


if __name__ == "__main__":
    main()
