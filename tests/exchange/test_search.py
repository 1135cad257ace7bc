"""Listing search over a real uvicorn (SQLite FTS5 trigram; PostgreSQL pg_trgm when
TEST_POSTGRES_URL is set): matching (Chinese and English), relevance, filters, sorts,
facets, cursor walks, index maintenance, and hostile parameters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session
from test_auth_support import (
    POSTGRES_URL,
    PROVIDER_CUSTODY,
    Exchange,
    error,
    listing_content,
    running_exchange,
)
from test_computations_support import offer
from test_search_support import page_dict

from exchange.listings.models import Listing
from exchange.listings.search import index as search_index
from ledger.sm2 import SM2PrivateKey

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _publish(exchange: Exchange, owner: SM2PrivateKey, **overrides: Any) -> str:
    listing_id = exchange.draft(owner, **overrides)
    for key, action in (
        (owner, "submit"),
        (exchange.operator, "review"),
        (exchange.operator, "publish"),
    ):
        response = exchange.step(key, listing_id, action)
        assert response.status_code == 200, response.text
    return listing_id


def _shares(*owners: SM2PrivateKey) -> list[dict[str, Any]]:
    return [{"key_id": o.key_id(), "share_bps": 10_000 // len(owners)} for o in owners]


def _declarations(classification: str) -> dict[str, Any]:
    return {
        "classification": classification,
        "personal_information": False,
        "source_legality": "Own collection.",
        "permitted_purposes": ["research"],
    }


class Corpus:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.p1 = exchange.provider("p1")
        self.p2 = exchange.provider("p2")
        self.a = _publish(
            exchange,
            self.p1,
            title="重庆交通流量数据",
            description="Hourly traffic counts at junctions.",
            category="transport",
            tags=["traffic", "chongqing"],
            pricing={"model": "fixed", "price": 19_900},
        )
        self.b = _publish(
            exchange,
            self.p1,
            title="Chongqing bus ridership",
            description="公交客流 per stop.",
            category="transport",
            tags=["bus", "chongqing"],
            pricing={
                "model": "subscription",
                "price_per_period": 5_000,
                "period_days": 30,
                "max_periods": 12,
            },
            declarations=_declarations("重要"),
        )
        self.c = _publish(
            exchange,
            self.p2,
            title="Weather observations",
            description="Temperature and rain at 重庆 stations. Traffic is not included.",
            category="environment",
            tags=["weather"],
            pricing={"model": "free"},
        )
        self.d = _publish(
            exchange,
            self.p2,
            title='Retail sales (NEAR "quoted")',
            description="Sales by store, 100% complete_data.",
            category="retail",
            tags=["sales", "chongqing"],
            pricing={
                "model": "tiers",
                "tiers": [
                    {"up_to_rows": 100_000, "price_per_1000_rows": 500},
                    {"up_to_rows": None, "price_per_1000_rows": 200},
                ],
            },
            **PROVIDER_CUSTODY,
        )
        self.draft = exchange.draft(self.p1, title="重庆交通 草稿", tags=["traffic"])
        self.delisted = _publish(exchange, self.p1, title="重庆交通 旧版", tags=["traffic"])
        response = exchange.step(self.p1, self.delisted, "delist", reason="superseded")
        assert response.status_code == 200, response.text
        self.client = exchange.http()

    def get(self, **params: Any) -> dict[str, Any]:
        response = self.client.get("/listings/search", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ids(self, **params: Any) -> list[str]:
        return [item["id"] for item in self.get(**params)["items"]]


@pytest.fixture(scope="module", params=BACKENDS)
def corpus(
    request: pytest.FixtureRequest, live_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with running_exchange(live_server, tmp_path_factory.mktemp("search"), request.param) as ex:
        yield Corpus(ex)


@pytest.fixture(params=BACKENDS)
def exchange(
    request: pytest.FixtureRequest, live_server: Any, tmp_path: Path
) -> Iterator[Exchange]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with running_exchange(live_server, tmp_path, request.param) as ex:
        yield ex


def test_chinese_and_english_queries(corpus: Corpus) -> None:
    c = corpus
    assert c.ids(q="重庆交通") == [c.a]  # trigram path; draft and delisted never match
    assert c.ids(q="交通流量数据") == [c.a]
    assert set(c.ids(q="重庆")) == {c.a, c.c}  # two characters: the short-term path
    assert c.ids(q="客流") == [c.b]
    assert c.ids(q="庆") == [c.a, c.c]  # one character; equal scores, newest first
    assert c.ids(q="chongqing bus") == [c.b]
    assert c.ids(q="CHONGQING   Bus") == [c.b]  # case and spacing do not matter
    assert c.ids(q="ＢＵＳ") == [c.b]  # full-width folds to ASCII (NFKC)
    assert c.ids(q="traffic 重庆") == [c.a, c.c]
    assert c.ids(q="nothing-like-this") == []


def test_relevance_weights_title_then_tags_then_description(corpus: Corpus) -> None:
    c = corpus
    page = c.get(q="traffic")
    assert [(i["id"], i["score"]) for i in page["items"]] == [(c.a, 3), (c.c, 1)]
    page = c.get(q="chongqing")
    # b: title 4 + tags 2; a and d: tags 2 (newest first)
    assert [(i["id"], i["score"]) for i in page["items"]] == [(c.b, 6), (c.d, 2), (c.a, 2)]
    assert page["total"] == 3


def test_filters(corpus: Corpus) -> None:
    c = corpus
    assert set(c.ids(category="transport")) == {c.a, c.b}
    assert c.ids(classification="重要") == [c.b]
    assert c.ids(pricing_model="free") == [c.c]
    assert c.ids(pricing_model="tiers") == [c.d]
    assert set(c.ids(min_price=1000, max_price=20_000)) == {c.a, c.b}
    assert c.ids(min_price=19_900, max_price=19_900) == [c.a]
    assert set(c.ids(max_price=500)) == {c.c, c.d}
    assert set(c.ids(provider=c.p2.key_id())) == {c.c, c.d}
    assert c.ids(tag=["chongqing", "bus"]) == [c.b]
    assert set(c.ids(tag=["chongqing"])) == {c.a, c.b, c.d}
    assert c.ids(tag=["traffic"]) == [c.a]  # the draft and the delisted listing carry it too
    assert c.ids(q="chongqing", category="retail") == [c.d]
    assert c.ids(category="nope") == []


def test_prices_and_hits(corpus: Corpus) -> None:
    c = corpus
    prices = {i["id"]: i["price_fen"] for i in c.get(limit=100)["items"]}
    assert prices == {c.a: 19_900, c.b: 5_000, c.c: 0, c.d: 500}
    [hit] = c.get(q="客流")["items"]
    assert hit["providers"] == [c.p1.key_id()] and hit["owner"] == c.p1.key_id()
    assert hit["classification"] == "重要" and hit["pricing"]["model"] == "subscription"
    assert all(isinstance(v, int) for v in prices.values())


def test_sorts(corpus: Corpus) -> None:
    c = corpus
    assert c.ids(sort="price_asc") == [c.c, c.d, c.b, c.a]
    assert c.ids(sort="price_desc") == [c.a, c.b, c.d, c.c]
    assert c.ids(sort="title") == [c.b, c.d, c.c, c.a]  # folded code-point order
    items = c.get(sort="newest")["items"]
    keys = [(-i["published_at"], i["id"]) for i in items]
    assert keys == sorted(keys) and len(items) == 4
    assert c.ids() == [i["id"] for i in items]  # newest is the default without q


def test_facets_follow_query_and_filters(corpus: Corpus) -> None:
    c = corpus
    page = c.get()
    assert page["total"] == 4
    facets = page["facets"]
    assert facets["category"] == [
        {"value": "transport", "count": 2},
        {"value": "environment", "count": 1},
        {"value": "retail", "count": 1},
    ]
    assert facets["classification"] == [
        {"value": "一般", "count": 3},
        {"value": "重要", "count": 1},
    ]
    assert {f["value"]: f["count"] for f in facets["pricing_model"]} == {
        "fixed": 1,
        "subscription": 1,
        "free": 1,
        "tiers": 1,
    }
    assert facets["tags"][0] == {"value": "chongqing", "count": 3}
    assert len(c.get(facet_limit=2)["facets"]["tags"]) == 2
    narrowed = c.get(q="重庆")["facets"]
    assert {f["value"] for f in narrowed["category"]} == {"transport", "environment"}
    assert c.get(q="重庆", facets="false")["facets"] is None
    assert c.get(q="重庆", facets="false")["total"] == 2
    assert c.get(q="none-such")["facets"]["tags"] == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "price_asc"},
        {"sort": "price_desc"},
        {"sort": "title"},
        {"q": "chongqing"},
        {"q": "a"},
        {"tag": ["chongqing"], "sort": "newest"},
    ],
)
def test_cursor_walk_visits_every_result_once(corpus: Corpus, params: dict[str, Any]) -> None:
    whole = corpus.ids(limit=100, **params)
    walked: list[str] = []
    cursor = None
    for _ in range(10):
        page = corpus.get(limit=1, **params, **({"cursor": cursor} if cursor else {}))
        walked.extend(i["id"] for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == whole and len(set(walked)) == len(walked)


def test_cursor_refusals(corpus: Corpus) -> None:
    c = corpus
    cursor = c.get(limit=1, sort="price_asc")["next_cursor"]
    assert cursor
    for params in (
        {"sort": "price_desc", "cursor": cursor},  # another sort
        {"sort": "price_asc", "category": "transport", "cursor": cursor},  # other filters
        {"sort": "price_asc", "cursor": "garbage!!"},
        {"sort": "price_asc", "cursor": "e30"},  # {}
        {"sort": "price_asc", "cursor": cursor[:-3]},
        {"sort": "price_asc", "cursor": "W10"},  # []
    ):
        error(c.client.get("/listings/search", params=params), 400, "invalid_cursor")
    import base64
    import json

    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for key in ([1.5, "x"], ["1", "x"], [2**70, "x"], [1], [True, "x"], [1, None]):
        forged = base64.urlsafe_b64encode(json.dumps({**raw, "k": key}).encode()).decode()
        error(
            c.client.get("/listings/search", params={"sort": "price_asc", "cursor": forged}),
            400,
            "invalid_cursor",
        )


HOSTILE = [
    '"',
    '""',
    "*",
    "traffic*",
    "NEAR",
    "NEAR(a b)",
    "a OR b",
    "-traffic",
    "(",
    ")",
    "(near",
    "^",
    ":",
    "title:traffic",
    "'; DROP TABLE listing; --",
    "%",
    "_",
    "\\",
    "🙂",
    "\u200b",
    "e\u0301",
    "x" * 200,
    "\t\n",
    "\x01traffic\x1f",
    '"quoted")',
    "AND",
    "{title}",
]


def test_hostile_queries_are_literal_text(corpus: Corpus) -> None:
    c = corpus
    for q in HOSTILE:
        response = c.client.get("/listings/search", params={"q": q})
        assert response.status_code == 200, (q, response.text)
    assert c.ids(q="%") == [c.d]  # "100%" is in its description; % is not a wildcard
    assert c.ids(q="_") == [c.d]
    assert c.ids(q="near") == [c.d]
    assert c.ids(q='"quoted")') == [c.d]
    assert c.ids(q="(near") == [c.d]
    assert c.ids(q="*") == []
    assert c.ids(q="traffic*") == []
    assert c.ids(q="-traffic") == []
    assert set(c.ids(q="\x01traffic\x1f")) == {c.a, c.c}  # control characters separate terms
    assert c.ids(q="\t\n") == c.ids()  # no terms: everything, newest first
    assert c.ids(q="cho\x00bus") == c.ids(q="cho bus") == [c.b]  # NUL separates too


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"q": "x" * 201}, 422, "invalid_request"),
        ({"q": " ".join("abcdefghi")}, 422, "invalid_query"),
        ({"category": "a\x00"}, 422, "invalid_query"),
        ({"tag": ["a\x00"]}, 422, "invalid_query"),
        ({"tag": ["x" * 51]}, 422, "invalid_query"),
        ({"tag": [str(i) for i in range(11)]}, 422, "invalid_query"),
        ({"limit": 0}, 422, "invalid_request"),
        ({"limit": 101}, 422, "invalid_request"),
        ({"limit": "ten"}, 422, "invalid_request"),
        ({"min_price": -1}, 422, "invalid_request"),
        ({"min_price": 1.5}, 422, "invalid_request"),
        ({"max_price": 10**16}, 422, "invalid_request"),
        ({"min_price": 10, "max_price": 9}, 422, "invalid_query"),
        ({"sort": "relevance"}, 422, "invalid_query"),
        ({"sort": "random"}, 422, "invalid_request"),
        ({"classification": "核心"}, 422, "invalid_request"),
        ({"pricing_model": "auction"}, 422, "invalid_request"),
        ({"provider": "ZZ"}, 422, "invalid_request"),
        ({"facet_limit": 51}, 422, "invalid_request"),
        ({"custody": "buyer"}, 422, "invalid_request"),
        ({"custody": "Provider"}, 422, "invalid_request"),
        ({"custody": "provider\x00"}, 422, "invalid_request"),
        ({"custody": ""}, 422, "invalid_request"),
        ({"computation": "maybe"}, 422, "invalid_request"),
        ({"computation": "2"}, 422, "invalid_request"),
        ({"computation": ""}, 422, "invalid_request"),
        ({"cursor": "x" * 2001}, 422, "invalid_request"),
    ],
)
def test_bad_parameters(corpus: Corpus, params: dict[str, Any], status: int, code: str) -> None:
    error(corpus.client.get("/listings/search", params=params), status, code)


def test_openapi_documents_search(corpus: Corpus) -> None:
    spec = corpus.client.get("/openapi.json").json()
    operation = spec["paths"]["/listings/search"]["get"]
    assert {"200", "400", "422"} <= set(operation["responses"])
    parameters = {p["name"]: p for p in operation["parameters"]}
    custody = parameters["custody"]["schema"]["anyOf"][0]
    assert custody["enum"] == ["provider", "exchange"]
    assert parameters["custody"]["schema"]["examples"] == ["provider"]
    assert parameters["computation"]["schema"]["anyOf"][0]["type"] == "boolean"
    assert parameters["computation"]["description"]
    schema = spec["components"]["schemas"]["SearchPage"]
    assert schema["examples"][0]["items"][0]["title"] == "重庆交通流量数据"


def test_custody_and_computation_filters_and_facets(exchange: Exchange) -> None:
    """Who holds the data and whether the listing offers computations: on each hit,
    as filters (alone, together, with text and other filters) and as facets; a new
    version without the offer leaves the computation listings."""
    owner = exchange.provider()
    held = _publish(exchange, owner, title="Exchange-held traffic", category="transport")
    agent = _publish(
        exchange, owner, title="Agent traffic", category="transport", **PROVIDER_CUSTODY
    )
    computed = _publish(
        exchange,
        owner,
        title="Computed traffic",
        category="retail",
        computation=offer(),
        **PROVIDER_CUSTODY,
    )
    client = exchange.http()

    def get(**params: Any) -> dict[str, Any]:
        response = client.get("/listings/search", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ids(**params: Any) -> set[str]:
        return {item["id"] for item in get(**params)["items"]}

    def counts(page: dict[str, Any], facet: str) -> dict[str, int]:
        return {f["value"]: f["count"] for f in page["facets"][facet]}

    whole = get()
    assert {i["id"]: i["custody"] for i in whole["items"]} == {
        held: "exchange",
        agent: "provider",
        computed: "provider",
    }
    assert counts(whole, "custody") == {"provider": 2, "exchange": 1}
    assert counts(whole, "computation") == {"false": 2, "true": 1}
    assert ids(custody="exchange") == {held}
    assert ids(custody="provider") == {agent, computed}
    assert ids(computation="true") == {computed}
    assert ids(computation="false") == {held, agent}
    assert ids(custody="exchange", computation="true") == set()
    assert ids(q="traffic", custody="provider", computation="false") == {agent}
    assert ids(custody="provider", category="transport") == {agent}
    narrowed = get(q="traffic", custody="provider")
    assert narrowed["total"] == 2
    assert counts(narrowed, "custody") == {"provider": 2}
    assert counts(narrowed, "computation") == {"false": 1, "true": 1}
    assert counts(narrowed, "category") == {"transport": 1, "retail": 1}
    assert get(custody="exchange", facets="false")["facets"] is None

    # a cursor belongs to its filters
    first = get(custody="provider", limit=1)
    assert first["next_cursor"] is not None
    error(
        client.get(
            "/listings/search",
            params={"custody": "exchange", "limit": 1, "cursor": first["next_cursor"]},
        ),
        400,
        "invalid_cursor",
    )
    second = get(custody="provider", limit=1, cursor=first["next_cursor"])
    assert {first["items"][0]["id"], second["items"][0]["id"]} == {agent, computed}

    version = exchange.act(
        owner,
        "POST",
        f"/listings/{computed}/versions",
        "listing.version_added",
        {
            "listing_id": computed,
            "version": 2,
            "content_digest": "cd" * 32,
            "row_count": 10,
            "byte_size": 100,
            "format": "csv",
            "row_root": "ef" * 32,
        },
    )
    assert version.status_code == 201, version.text
    assert ids(computation="true") == set()
    assert counts(get(), "computation") == {"false": 3}


def test_index_follows_publish_edit_and_delist(exchange: Exchange) -> None:
    owner = exchange.provider()
    client = exchange.http()

    def found(q: str) -> list[str]:
        response = client.get("/listings/search", params={"q": q})
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    listing_id = exchange.draft(owner, title="山城 初稿 dataset")
    assert found("dataset") == []  # a draft is not searchable
    payload = {
        "listing_id": listing_id,
        **listing_content(owner.key_id(), title="山城 定稿 dataset"),
    }
    edited = exchange.act(owner, "PUT", f"/listings/{listing_id}", "listing.edited", payload)
    assert edited.status_code == 200, edited.text
    for key, action in ((owner, "submit"), (exchange.operator, "review")):
        assert exchange.step(key, listing_id, action).status_code == 200
    assert found("dataset") == []  # under review: still not
    assert exchange.step(exchange.operator, listing_id, "publish").status_code == 200
    assert found("定稿") == [listing_id] and found("初稿") == []

    # a change of a published listing's text (the service's one hook) re-indexes it
    with Session(exchange.app.state.engine) as session:
        row = session.get(Listing, listing_id)
        assert row is not None
        row.title = "Renamed traffic set"
        row.tags = ["renamed"]
        search_index.sync(session, row)
        session.commit()
    assert found("renamed") == [listing_id] and found("定稿") == []
    tags = client.get("/listings/search", params={"tag": "renamed"}).json()
    assert [i["id"] for i in tags["items"]] == [listing_id]
    assert client.get("/listings/search", params={"tag": "bus"}).json()["items"] == []

    delisted = exchange.step(owner, listing_id, "delist", reason="withdrawn")
    assert delisted.status_code == 200, delisted.text
    page = client.get("/listings/search").json()
    assert page["items"] == [] and page["total"] == 0 and page["facets"]["tags"] == []
    assert found("renamed") == []


def test_refused_change_leaves_the_index_alone(exchange: Exchange) -> None:
    owner = exchange.provider()
    listing_id = _publish(exchange, owner, title="Kept listing")
    stranger = exchange.provider("stranger")
    refused = exchange.step(stranger, listing_id, "delist", reason="not mine")
    assert refused.status_code == 403, refused.text
    ids = [
        i["id"]
        for i in exchange.http().get("/listings/search", params={"q": "kept"}).json()["items"]
    ]
    assert ids == [listing_id]


def test_cursor_is_stable_under_inserts(exchange: Exchange) -> None:
    owner = exchange.provider()
    first = [_publish(exchange, owner, title=f"Series {n}") for n in range(4)]
    client = exchange.http()
    page = client.get("/listings/search", params={"sort": "newest", "limit": 2}).json()
    seen = [i["id"] for i in page["items"]]
    newer = _publish(exchange, owner, title="Series late")  # lands before the cursor
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(
            "/listings/search", params={"sort": "newest", "limit": 2, "cursor": cursor}
        ).json()
        seen.extend(i["id"] for i in page["items"])
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(first) and newer not in seen


def test_search_needs_no_signature(exchange: Exchange) -> None:
    response = httpx.get(exchange.url + "/listings/search", params={"q": "x"})
    assert response.status_code == 200 and response.json()["items"] == []


STRATEGY_CASES: list[dict[str, Any]] = [
    {"q": "chongqing"},
    {"q": "chongqing", "category": "transport"},
    {"q": "traffic 重庆"},
    {"q": "重庆", "max_price": 20_000},
    {"q": "sales", "tags": ("chongqing",)},
    {"q": "chongqing", "sort": "price_desc", "limit": 1},
    {"q": "chongqing", "sort": "title"},
    {"category": "transport", "tags": ("chongqing",)},
    {"tags": ("chongqing",), "sort": "price_asc"},
    {"pricing_model": "fixed", "tags": ("traffic",)},
    {"min_price": 1, "facets": False},
    {"tags": ("chongqing",), "facets": False},
]


def test_query_plans_do_not_change_results(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan choices (FTS5 or instr for the text, materialised match set or
    not, which IN list drives) give the same pages, totals, facets and cursors."""
    from exchange.listings.search import SearchParams, query, search, sqlite

    def run(params: dict[str, Any]) -> list[dict[str, Any]]:
        pages = []
        cursor = None
        with Session(corpus.exchange.app.state.engine) as session:
            for _ in range(6):
                page = search(session, SearchParams(**params, cursor=cursor))
                pages.append(page_dict(page))
                cursor = page.next_cursor
                if cursor is None:
                    break
        return pages

    for params in STRATEGY_CASES:
        results = []
        for instr_candidates, cap in ((5000, 20_000), (0, 20_000), (5000, 0), (0, 0)):
            monkeypatch.setattr(sqlite, "INSTR_CANDIDATES", instr_candidates)
            monkeypatch.setattr(query, "CAP", cap)
            results.append(run(params))
        assert all(r == results[0] for r in results), params
        assert results[0][0]["total"] == corpus.get(**_http(params))["total"], params


def _http(params: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if k != "tags"}
    if "tags" in params:
        out["tag"] = list(params["tags"])
    if "facets" in out:
        out["facets"] = str(out["facets"]).lower()
    return out


def test_materialised_matches_do_not_leak_between_searches(corpus: Corpus) -> None:
    c = corpus
    with Session(c.exchange.app.state.engine) as session:
        from exchange.listings.search import SearchParams, search

        wide = search(session, SearchParams(q="chongqing"))
        narrow = search(session, SearchParams(q="客流"))
        again = search(session, SearchParams(q="chongqing"))
    assert [i.id for i in narrow.items] == [c.b] and narrow.total == 1
    assert narrow.facets is not None and narrow.facets.category[0].count == 1
    assert again == wide and wide.total == 3
