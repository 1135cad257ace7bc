"""Every plan the search can choose gives the plain plan's results: the same items
in the same order, totals, facets and cursors, page after page.

The corpus (~900 listings, written straight into the database) is built so that
each plan runs at the thresholds it is forced to: very common terms (a word in
about half the descriptions; single letters in nearly every listing), 1-2
character Chinese terms in a tenth of the titles, ties in every sort key (many
free listings at price 0, shared publication times, equal titles), listings
without classification, repeated and Chinese tags, a long tail of rare tags (so
the bitmap facets' pruning has values to skip), both custodies and a third of
the listings offering computations. The plans are forced through
the plan modules' thresholds (see the docstrings of exchange/listings/search/planner.py,
sqlite.py and postgres.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from test_search_support import POSTGRES_URL, listing, search_database, seed, walk

from exchange.listings.models import Listing
from exchange.listings.search import planner, postgres, query, sqlite
from exchange.listings.search.index import fold

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

CITIES = ["重庆", "成都", "上海", "北京", "广州", "深圳", "武汉", "西安", "杭州", "南京"]
TOPICS = ["交通流量", "公交客流", "气象观测", "零售销售", "能源消耗", "医疗资源", "人口统计"]
WORDS = ["hourly", "daily", "counts", "sensor", "station", "junction", "vehicle", "store",
         "sales", "energy", "grid", "rain", "price", "index", "open", "quality", "district",
         "river", "bridge", "metro", "traffic", "tag", "100%", "a_b", '"quoted"',
         "(near"]  # fmt: skip
COMMON_TAGS = [f"tag{n}" for n in range(12)] + ["open", "chongqing", "实时", "历史 数据"]
CATEGORIES = ["transport", "environment", "retail", "energy", "health", "finance", "交通"]
OFFER = {"version": 1, "table": "t"}  # the index only notes that there is one


def _pricing(rng: random.Random) -> dict[str, Any]:
    model = rng.choice(["free", "free", "fixed", "fixed", "tiers", "subscription"])
    if model == "free":
        return {"model": "free"}
    if model == "fixed":
        return {"model": "fixed", "price": rng.choice([100, 500, 19_900, 50_000])}
    if model == "tiers":
        return {
            "model": "tiers",
            "tiers": [
                {"up_to_rows": 100_000, "price_per_1000_rows": rng.choice([10, 500])},
                {"up_to_rows": None, "price_per_1000_rows": 1},
            ],
        }
    return {
        "model": "subscription",
        "price_per_period": rng.choice([1000, 5000]),
        "period_days": 30,
        "max_periods": 12,
    }


def corpus_rows(count: int = 900) -> list[Listing]:
    rng = random.Random(20261125)
    rows = []
    for n in range(count):
        city, topic = rng.choice(CITIES), rng.choice(TOPICS)
        title = f"{city}{topic}数据" if n % 7 else "Same title"
        if n % 11 == 0:
            title += " Traffic"
        tags = rng.sample(COMMON_TAGS, rng.randrange(0, 4))
        if n % 5 == 0:
            tags.append(f"rare{n}")  # one listing each: the pruning's long tail
        if n % 13 == 0 and tags:
            tags.append(tags[0])  # repeated: counted once
        rows.append(
            listing(
                n,
                title=title,
                description=" ".join(rng.choices(WORDS, k=rng.randrange(3, 25))),
                category=rng.choice(CATEGORIES),
                tags=tags,
                pricing=_pricing(rng),
                classification=rng.choice(["一般", "一般", "重要", None]),
                published_at=1_790_000_000_000 - n // 3,  # ties of three
                owner_key_id=f"{1 + n % 4:064x}",
                custody=rng.choice(["provider", "provider", "exchange"]),
                computation=OFFER if n % 3 == 0 else None,
            )
        )
    return rows


@pytest.fixture(scope="module", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with search_database(request.param, tmp_path_factory.mktemp("plans")) as engine:
        seed(engine, corpus_rows())
        yield engine


PROVIDER = f"{2:064x}"
CASES: list[dict[str, Any]] = [
    {},
    {"sort": "price_asc"},
    {"sort": "title", "limit": 13},
    {"q": "traffic"},  # common: descriptions, some titles
    {"q": "traffic", "sort": "price_desc"},
    {"q": "traffic", "sort": "newest", "facet_limit": 3},
    {"q": "traffic", "sort": "title"},
    {"q": "a"},  # one letter, in nearly every listing
    {"q": "a", "sort": "price_asc", "facet_limit": 1},
    {"q": "重庆"},  # two Chinese characters, titles
    {"q": "庆", "sort": "newest"},
    {"q": "数据 traffic"},
    {"q": "%"},
    {"q": '"quoted"'},
    {"q": "_ tag"},
    {"q": "tag", "facet_limit": 2},  # in tags and descriptions
    {"q": "实时"},  # a tag only
    {"q": "nothing-like-this"},
    {"q": "rain", "category": "transport"},
    {"q": "重庆", "max_price": 600, "sort": "price_asc"},
    {"q": "traffic", "tags": ("open",)},
    {"q": "station", "provider": PROVIDER},
    {"q": "traffic", "classification": "重要", "pricing_model": "fixed"},
    {"category": "retail"},
    {"category": "retail", "tags": ("tag3",), "sort": "price_desc"},
    {"tags": ("open",), "facet_limit": 4},
    {"pricing_model": "free", "sort": "title"},
    {"min_price": 100, "max_price": 19_900},
    {"provider": PROVIDER, "sort": "price_asc"},
    {"q": "traffic", "facets": False},
    {"category": "energy", "facets": False},
    {"custody": "exchange"},
    {"custody": "provider", "sort": "price_asc", "facet_limit": 1},
    {"computation": True, "sort": "title"},
    {"computation": False, "tags": ("open",)},
    {"custody": "exchange", "computation": True, "category": "retail"},
    {"q": "traffic", "custody": "provider"},
    {"q": "a", "computation": False, "sort": "price_desc"},
    {"q": "重庆", "custody": "exchange", "computation": True},
    {"q": "station", "computation": True, "provider": PROVIDER},
    {"q": "tag", "custody": "provider", "max_price": 600, "facet_limit": 2},
    {"custody": "provider", "facets": False},
]
SQLITE_PLANS: dict[str, dict[str, Any]] = {
    "auto": {},
    "bitmap facets, walked pages": {"BITMAP_MATCHES": 0, "WALK_MATCHES": 0, "WALK_DENSITY": 10**9},
    "row facets, sorted pages": {"BITMAP_MATCHES": 10**9, "WALK_MATCHES": 10**9},
    "bitmaps one value a batch": {"BITMAP_MATCHES": 0, "BITMAP_BATCH": 1},
    "instr on the candidates": {"INSTR_CANDIDATES": 10**9, "CAP": 10**9},
    "FTS always": {"INSTR_CANDIDATES": -1},
}
POSTGRES_PLANS: dict[str, dict[str, Any]] = {
    "auto": {},
    "gram index always": {"COMMON_GRAM": 2.0},
    "strpos for short terms": {"COMMON_GRAM": 0.0},
}


KNOB_MODULES: dict[str, ModuleType] = {  # each threshold, in the module that reads it
    "CAP": query,
    "INSTR_CANDIDATES": sqlite,
    "BITMAP_MATCHES": sqlite,
    "BITMAP_BATCH": sqlite,
    "WALK_MATCHES": sqlite,
    "WALK_DENSITY": sqlite,
    "COMMON_GRAM": postgres,
}


def _plans(engine: Any) -> dict[str, dict[str, Any]]:
    return SQLITE_PLANS if engine.dialect.name == "sqlite" else POSTGRES_PLANS


def _check_plans(engine: Any, params: dict[str, Any], pages: int, monkeypatch: Any) -> None:
    with monkeypatch.context() as plain:
        plain.setattr(planner, "PLAIN", True)
        expected = walk(engine, params, pages)
    for name, knobs in _plans(engine).items():
        with monkeypatch.context() as patched:
            for knob, value in knobs.items():
                patched.setattr(KNOB_MODULES[knob], knob, value)
            assert walk(engine, params, pages) == expected, name


@pytest.mark.parametrize("params", CASES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_every_plan_gives_the_plain_plans_pages(
    engine: Any, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pages (cursors included) of each case, with small pages."""
    _check_plans(engine, {"limit": 7, **params}, 4, monkeypatch)


@pytest.mark.parametrize(
    "params",
    [
        {"q": "traffic"},
        {"q": "a", "sort": "price_asc"},
        {"q": "重庆"},
        {"sort": "title"},
        {"q": "a", "custody": "provider", "sort": "newest"},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_every_plan_walks_the_same_whole_result(
    engine: Any, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page to the end: each listing once, in the plain plan's order."""
    params = {"limit": 25, **params}
    with monkeypatch.context() as plain:
        plain.setattr(planner, "PLAIN", True)
        pages = walk(engine, params)
    ids = [item["id"] for page in pages for item in page["items"]]
    assert len(ids) == len(set(ids)) == pages[0]["total"] and len(pages) > 2
    _check_plans(engine, params, 200, monkeypatch)


INTERNALS = (  # (the module that calls it, the plan's function)
    (planner, "search_everything"),
    (planner, "search_matches"),
    (planner, "search_plain"),
    (sqlite, "_walk_page"),
    (sqlite, "_bitmap_top"),
)


def test_the_forced_plans_do_run(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases above run each plan they are compared on, when it is forced."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the SQLite plans")
    ran: set[str] = set()
    for module, name in INTERNALS:
        original = getattr(module, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            ran.add(_name)
            return _original(*args)

        monkeypatch.setattr(module, name, spy)
    for knobs in SQLITE_PLANS.values():
        with monkeypatch.context() as patched:
            for knob, value in knobs.items():
                patched.setattr(KNOB_MODULES[knob], knob, value)
            for params in CASES:
                walk(engine, {"limit": 7, **params}, pages=1)
    assert ran == {name for _, name in INTERNALS}


def test_facets_stay_exact_for_huge_match_sets(engine: Any) -> None:
    """A term in nearly every listing: the facets are the whole index's, less the
    listings without it, counted exactly (not sampled or capped)."""
    rows = corpus_rows()
    with_a = [r for r in rows if "a" in fold(f"{r.title} {' '.join(r.tags)} {r.description}")]
    [page] = walk(engine, {"q": "a", "limit": 1, "facet_limit": 50}, pages=1)
    assert page["total"] == len(with_a)
    categories: dict[str, int] = {}
    custody: dict[str, int] = {}
    computation: dict[str, int] = {}
    tags: dict[str, int] = {}
    for row in with_a:
        categories[row.category] = categories.get(row.category, 0) + 1
        custody[row.custody] = custody.get(row.custody, 0) + 1
        offers = "true" if row.computation is not None else "false"
        computation[offers] = computation.get(offers, 0) + 1
        for tag in dict.fromkeys(row.tags):
            tags[tag] = tags.get(tag, 0) + 1
    facets = page["facets"]
    assert {f["value"]: f["count"] for f in facets["category"]} == categories
    assert {f["value"]: f["count"] for f in facets["custody"]} == custody
    assert {f["value"]: f["count"] for f in facets["computation"]} == computation
    assert set(custody) == {"provider", "exchange"} and set(computation) == {"true", "false"}
    top = sorted(tags.items(), key=lambda item: (-item[1], item[0]))[:50]
    assert [(f["value"], f["count"]) for f in page["facets"]["tags"]] == top
