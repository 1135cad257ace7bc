"""The explorer's pages over HTTP (the browser tests click through the same pages in
Chromium): what each page shows of a real story, what it refuses and how (an HTML
page with the API's status and code), that the JSON API keeps its paths and that
every asset is the exchange's own."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from test_auth_support import POSTGRES_URL
from test_explorer_support import (
    BUYER_NAME,
    CO_PROVIDER_NAME,
    COMPUTATION_TITLE,
    DRAFT_TITLE,
    FIXED_TITLE,
    PROVIDER_NAME,
    World,
    explorer_world,
)

from devnet.launcher import Devnet
from exchange.api.explorer import catalogue
from exchange.api.explorer.assets import DEFAULT_WEB_DIR
from exchange.api.explorer.operator_page import Figure, get_operator_figures
from exchange.app import create_app
from exchange.listings import service as listings
from exchange.local_exchange import free_port
from exchange.log.testing import isolated_database
from exchange.settings import Settings
from ledger.protocol.listing import Listing

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    devnet: Devnet,
    live_server: Any,
) -> Iterator[World]:
    """The story's exchange on a SQLite file, and on PostgreSQL when TEST_POSTGRES_URL is
    set (the pages' queries are the same on both)."""
    if request.param == "postgresql" and POSTGRES_URL is None:
        pytest.skip("TEST_POSTGRES_URL is not set")
    directory = tmp_path_factory.mktemp("explorer")
    postgres = POSTGRES_URL if request.param == "postgresql" else None
    with (
        isolated_database(postgres, directory) as db,
        explorer_world(directory, devnet, live_server, database_url=db.url) as world,
    ):
        yield world


def _text(page: str) -> str:
    """The page's text, tags removed and whitespace folded (what a reader sees)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _page(world: World, path: str, status: int = 200, **params: Any) -> str:
    response = httpx.get(f"{world.url}{path}", params=params or None)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html"), response.headers
    return response.text


def _refused(world: World, path: str, status: int, code: str, **params: Any) -> str:
    page = _page(world, path, status, **params)
    assert f'data-code="{code}"' in page, page[:2000]
    return _text(page)


def _hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]


# -- catalogue -------------------------------------------------------------------------


def test_catalogue_lists_the_published_listings_with_provider_names_and_prices(
    world: World,
) -> None:
    page = _page(world, "/")
    text = _text(page)
    assert FIXED_TITLE in text and COMPUTATION_TITLE in text
    assert DRAFT_TITLE not in text  # drafts are never in the catalogue
    assert 'data-total="2"' in page
    assert PROVIDER_NAME in text and CO_PROVIDER_NAME in text
    assert "¥600.00 / 每单 per order" in text
    assert f'href="/explore/listings/{world.fixed_listing}"' in page
    assert f'href="/explore/participants/{world.provider}"' in page
    # facets: one listing in each custody, counted over the whole result
    custody = re.search(r'<section[^>]*data-facet="custody".*?</section>', page, re.S)
    assert custody is not None
    assert re.sub(r"\s+", " ", _text(custody.group(0))) == (
        "托管 Custody 交易所 exchange 1 提供方 provider 1"
    )


def test_a_facet_link_filters_and_a_second_click_removes_the_filter(world: World) -> None:
    page = _page(world, "/")
    link = next(h for h in _hrefs(page) if "custody=provider" in h)
    filtered = _page(world, link)
    assert 'data-total="1"' in filtered
    text = _text(filtered)
    assert COMPUTATION_TITLE in text and FIXED_TITLE not in text
    selected = re.findall(r'<a href="([^"]*)" class="on" aria-current="true">', filtered)
    assert selected == ["/"]  # the selected facet's link removes it
    assert 'data-total="2"' in _page(world, selected[0])


def test_search_terms_and_tags_narrow_the_catalogue(world: World) -> None:
    assert 'data-total="1"' in _page(world, "/", q="可算不可见")
    assert 'data-total="0"' in _page(world, "/", q="没有这个词 nonexistent")
    assert 'data-total="1"' in _page(world, "/", tag="computation")
    assert 'data-total="2"' in _page(world, "/", tag="公交")
    assert 'data-total="1"' in _page(world, "/", computation="false")
    page = _page(world, "/", q="公交", sort="price_desc")
    assert 'data-total="2"' in page and 'value="price_desc" selected' in page


def test_the_catalogue_pages_with_its_cursor(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue, "PAGE_SIZE", 1)
    titles: list[str] = []
    path: str | None = "/?tag=公交&sort=title"
    while path is not None:
        page = _page(world, path)
        titles += re.findall(r'<article class="hit"[^>]*>\s*<h2><a [^>]*>([^<]*)</a>', page)
        following = re.search(r'rel="next" href="([^"]+)"', page)
        path = None if following is None else html.unescape(following.group(1))
        assert path is None or ("tag=" in path and "sort=title" in path and "cursor=" in path)
    assert sorted(titles) == sorted([FIXED_TITLE, COMPUTATION_TITLE]) and len(titles) == 2


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"classification": "核心"}, 422, "invalid_request"),
        ({"custody": "nobody"}, 422, "invalid_request"),
        ({"computation": "maybe"}, 422, "invalid_request"),
        ({"sort": "random"}, 422, "invalid_request"),
        ({"q": "x" * 201}, 422, "invalid_request"),
        ({"q": "a\x00b"}, 422, "invalid_request"),
        ({"category": "c" * 101}, 422, "invalid_request"),
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ({"tag": [f"t{i}" for i in range(11)]}, 422, "invalid_request"),
        ({"q": " ".join(f"w{i}" for i in range(40))}, 422, "invalid_query"),
    ],
)
def test_the_catalogue_refuses_what_the_search_cannot_take(
    world: World, params: dict[str, Any], status: int, code: str
) -> None:
    response = httpx.get(f"{world.url}/?{urlencode(params, doseq=True)}")
    assert response.status_code == status, response.text[:500]
    assert f'data-code="{code}"' in response.text


def test_relevance_without_terms_falls_back_to_the_default_order(world: World) -> None:
    assert 'data-total="2"' in _page(world, "/", sort="relevance")


# -- listing ---------------------------------------------------------------------------


def test_listing_page_shows_schema_sample_custody_price_providers_and_versions(
    world: World,
) -> None:
    page = _page(world, f"/explore/listings/{world.fixed_listing}")
    text = _text(page)
    assert FIXED_TITLE in text
    for column in ("stop_id", "stop_name", "district", "date", "boardings", "alightings"):
        assert f"<td>{column}</td>" in page
    assert "解放碑" in text and "YZ0412" in text  # sample rows
    assert "托管 Custody exchange" in text
    assert "¥600.00 / 每单 per order" in text
    assert f"{PROVIDER_NAME} " in text and "70.00 %" in text and "30.00 %" in text
    assert "classification 一般" in text and "personal_information 否 no" in text
    assert "v1" in text and 'id="computation"' not in page
    assert f'href="/listings/{world.fixed_listing}"' in page  # its JSON


def test_a_computation_offer_is_rendered(world: World) -> None:
    page = _page(world, f"/explore/listings/{world.computation_listing}")
    text = _text(page)
    assert 'id="computation"' in page
    assert "min_group_size 5" in text and "laplace" in text and "ridership" in text
    assert "托管 Custody provider" in text


def test_fields_the_page_does_not_know_are_shown_as_they_come(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Sealed(Listing):  # (``certificate`` is a known field now: a number)
        seal: dict[str, Any]

    real = listings.get

    def with_seal(*args: Any) -> Listing:
        listing = real(*args)
        return Sealed(
            **{f.name: getattr(listing, f.name) for f in fields(listing)},
            seal={"rights": ["hold", "use"], "issued_by": "重庆数据交易所"},
        )

    monkeypatch.setattr(listings, "get", with_seal)
    page = _page(world, f"/explore/listings/{world.fixed_listing}")
    assert 'data-field="seal"' in page
    assert "issued_by 重庆数据交易所" in _text(page)


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def test_what_a_provider_wrote_is_shown_as_text_never_as_markup(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = listings.get

    def hostile(*args: Any) -> Listing:
        listing = real(*args)
        return replace(
            listing,
            title=HOSTILE,
            description=HOSTILE,
            tags=(HOSTILE,),
            sample_rows=({"stop_id": HOSTILE, HOSTILE: "x"},),
            usage_terms=HOSTILE,
        )

    monkeypatch.setattr(listings, "get", hostile)
    page = _page(world, f"/explore/listings/{world.fixed_listing}")
    assert "<img" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert _text(page).count(HOSTILE) >= 5


def test_a_search_is_echoed_as_text(world: World) -> None:
    page = _page(world, "/", q=HOSTILE[:60])
    assert "<img" not in page and "<script>alert" not in page
    assert 'value="&#34;&gt;&lt;img' in page


@pytest.mark.parametrize(
    "path", ["/", "/log", "/anchors", "/verify", "/operator", "/explore/listings/nope"]
)
def test_explorer_pages_allow_only_the_exchanges_own_scripts(world: World, path: str) -> None:
    response = httpx.get(f"{world.url}{path}")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)  # no inline script
    assert " style=" not in response.text and "<style" not in response.text
    assert not re.search(r" on[a-z]+=", response.text)  # no inline handlers


def test_the_json_api_keeps_the_listing_path(world: World) -> None:
    response = httpx.get(f"{world.url}/listings/{world.fixed_listing}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["title"] == FIXED_TITLE
    browser_like = httpx.get(
        f"{world.url}/listings/{world.fixed_listing}", headers={"accept": "text/html"}
    )
    assert browser_like.headers["content-type"] == "application/json"


def test_drafts_unknown_and_malformed_listings_are_refused_as_pages(world: World) -> None:
    text = _refused(world, f"/explore/listings/{world.draft_listing}", 404, "listing_not_found")
    assert DRAFT_TITLE not in text
    _refused(
        world, "/explore/listings/00000000-0000-4000-8000-000000000000", 404, "listing_not_found"
    )
    _refused(world, "/explore/listings/not-a-uuid", 422, "invalid_request")
    _refused(world, f"/explore/listings/{world.fixed_listing.upper()}", 422, "invalid_request")


# -- participants ----------------------------------------------------------------------


def test_a_providers_page_shows_its_key_role_and_public_listings(world: World) -> None:
    page = _page(world, f"/explore/participants/{world.provider}")
    text = _text(page)
    assert PROVIDER_NAME in text and "角色 Role provider" in text and "active" in text
    assert world.provider in text and "BEGIN PUBLIC KEY" in text
    assert FIXED_TITLE in text and COMPUTATION_TITLE in text
    assert DRAFT_TITLE not in text
    co = _text(_page(world, f"/explore/participants/{world.co_provider}"))
    assert CO_PROVIDER_NAME in co and FIXED_TITLE in co  # a co-provider's listings too
    buyer = _text(_page(world, f"/explore/participants/{world.buyer}"))
    assert BUYER_NAME in buyer and "角色 Role buyer" in buyer and "No public listings" in buyer


def test_unknown_and_malformed_participants_are_refused(world: World) -> None:
    _refused(world, f"/explore/participants/{'0' * 64}", 404, "participant_not_found")
    _refused(world, "/explore/participants/xyz", 422, "invalid_request")
    _refused(world, f"/explore/participants/{world.provider}", 422, "invalid_request", offset="-1")
    _refused(world, f"/explore/participants/{world.provider}", 422, "invalid_request", offset="1e3")


# -- log and anchors -------------------------------------------------------------------


def test_the_log_page_shows_the_checkpoint_and_entries_newest_first(world: World) -> None:
    checkpoint = httpx.get(f"{world.url}/log/checkpoint").json()
    page = _page(world, "/log")
    assert f'data-tree-size="{checkpoint["tree_size"]}"' in page
    assert checkpoint["root"] in page
    indexes = [int(i) for i in re.findall(r'<tr data-index="(\d+)"', page)]
    assert indexes == list(range(checkpoint["tree_size"] - 1, -1, -1))[: len(indexes)]
    row = re.search(rf'<tr data-index="{world.order_index}">.*?</tr>', page, re.S)
    assert row is not None
    assert "order.placed" in row.group(0) and BUYER_NAME in _text(row.group(0))
    assert f'href="/verify?index={world.order_index}"' in row.group(0)
    assert "participant.registered" in page and PROVIDER_NAME in _text(page)


def test_the_exchanges_own_records_name_its_log_key(world: World) -> None:
    page = _page(world, "/log")
    rows = re.findall(r'<tr data-index="\d+">.*?</tr>', page, re.S)
    by_exchange = [r for r in rows if 'href="/.well-known/shancheng/log-key"' in r]
    types = {re.findall(r"<code>([a-z_.]+)</code>", r)[0] for r in by_exchange}
    assert "settlement.paid" in types, types  # the settlement of the accepted order
    assert all("交易所 the exchange (log key)" in _text(r) for r in by_exchange)
    # every other actor is a participant or an operator, linked to its page
    assert len(rows) - len(by_exchange) == len(
        [r for r in rows if 'href="/explore/participants/' in r]
    )


def test_the_log_is_paged_without_gaps_or_repeats(world: World) -> None:
    seen: list[int] = []
    path: str | None = "/log?limit=4"
    while path is not None:
        page = _page(world, path)
        seen += [int(i) for i in re.findall(r'<tr data-index="(\d+)"', page)]
        older = re.search(r'rel="next" href="([^"]+)"', page)
        path = None if older is None else html.unescape(older.group(1)) + "&limit=4"
    assert seen == list(range(world.tree_size - 1, -1, -1))
    newer = _page(world, "/log", before="4", limit="4")
    assert re.findall(r'<tr data-index="(\d+)"', newer) == ["3", "2", "1", "0"]
    assert 'rel="prev"' in newer and 'rel="next"' not in newer


@pytest.mark.parametrize(
    "params",
    [
        {"before": "-1"},
        {"before": "abc"},
        {"limit": "0"},
        {"limit": "201"},
        {"before": "9" * 20},
        {"limit": "²"},
    ],
)
def test_the_log_page_refuses_bad_paging(world: World, params: dict[str, str]) -> None:
    _refused(world, "/log", 422, "invalid_request", **params)


def test_the_anchors_page_shows_tx_block_confirmations_state_and_gas(world: World) -> None:
    page = _page(world, "/anchors")
    anchors = httpx.get(f"{world.url}/log/anchors").json()
    final = next(a for a in anchors if a["tree_size"] == world.tree_size)
    row = re.search(
        rf'<tr data-tree-size="{world.tree_size}" data-state="final">.*?</tr>', page, re.S
    )
    assert row is not None, page
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)]
    assert cells[0] == str(world.tree_size) and cells[1] == "final"
    assert final["tx_hash"].startswith(cells[2].rstrip("…"))
    assert cells[3] == str(final["block_number"])
    head = int(re.search(r'data-head="(\d+)"', page).group(1))  # type: ignore[union-attr]
    assert int(cells[4]) == head - final["block_number"] + 1 >= 1
    assert int(cells[5].replace(",", "")) > 21_000  # gas used by the anchoring call
    assert world.registry in page and 'data-state="final"' in page


def test_the_anchors_page_survives_a_chain_that_does_not_answer(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        rpc_url=f"http://127.0.0.1:{free_port()}",
        registry_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get("/anchors")

    import anyio

    response = anyio.run(fetch)
    assert response.status_code == 200
    assert "未知 unknown" in _text(response.text) and 'data-head=""' in response.text


# -- verify, operator, docs ------------------------------------------------------------


def test_the_verify_page_carries_the_chain_configuration_and_the_index(world: World) -> None:
    page = _page(world, "/verify", index=str(world.order_index))
    assert f'value="{world.rpc_url}"' in page and f'value="{world.registry}"' in page
    assert f'data-index="{world.order_index}"' in page
    for step in (
        "actor_signature",
        "leaf_hash",
        "inclusion",
        "checkpoint_signature",
        "chain_anchor",
    ):
        assert f'data-step="{step}"' in page
    assert "/assets/vendor/sm-crypto/sm2.js" in page or 'data-verdict="unavailable"' in page
    _refused(world, "/verify", 422, "invalid_request", index="-1")
    _refused(world, "/verify", 422, "invalid_request", index="0x10")


def test_the_operator_page_shows_the_measured_figures(world: World) -> None:
    page = _page(world, "/operator")
    assert "No figures yet" not in page
    shown = dict(
        re.findall(r'data-name="([a-z_]+)"[^>]*>\s*<div class="figure-value">([^<]*)<', page)
    )
    for name in (
        "shancheng_http_requests_total",
        "shancheng_log_entries",
        "shancheng_sequencer_lag_entries",
        "shancheng_anchors",
        "shancheng_oldest_unanchored_age_seconds",
        "shancheng_pending_deliveries",
        "shancheng_pending_computations",
        "shancheng_append_batch_records",
    ):
        assert shown.get(name), name
    assert int(shown["shancheng_log_entries"].replace(",", "")) >= world.tree_size
    assert re.search(r"\bfinal [1-9]", shown["shancheng_anchors"]), shown["shancheng_anchors"]


def test_the_operator_page_shows_the_figures_its_hook_gives(world: World) -> None:
    async def figures() -> list[Figure]:
        return [Figure("shancheng_log_size", "日志条目 Log entries", "1,234", "integrated")]

    world.app.dependency_overrides[get_operator_figures] = figures
    try:
        page = _page(world, "/operator")
    finally:
        del world.app.dependency_overrides[get_operator_figures]
    assert 'data-figures="1"' in page and 'data-name="shancheng_log_size"' in page
    assert "1,234" in _text(page) and "日志条目 Log entries" in _text(page)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_only_the_exchanges_own_assets(world: World, path: str) -> None:
    page = _page(world, path)
    urls = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r"url: '([^']+)'", page)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "http" not in page.replace("http-equiv", ""), page  # no CDN, no font service
    for url in urls:
        asset = httpx.get(f"{world.url}{url}")
        assert asset.status_code == 200, url


def test_the_default_docs_routes_are_gone_from_fastapi(world: World) -> None:
    assert httpx.get(f"{world.url}/docs/oauth2-redirect").status_code == 404
    assert httpx.get(f"{world.url}/openapi.json").status_code == 200
    paths = httpx.get(f"{world.url}/openapi.json").json()["paths"]
    assert not [p for p in paths if p in ("/", "/log", "/anchors", "/verify", "/operator")]
    assert not [p for p in paths if p.startswith(("/explore", "/assets", "/docs", "/redoc"))]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/assets/vendor/left-pad/index.js", 404, "asset_not_found"),
        ("/assets/vendor/", 404, "asset_not_found"),
        ("/assets/explorer/%2e%2e/rendering.py", 404, "asset_not_found"),
        ("/assets/explorer/..%2f..%2fapp.py", 404, "asset_not_found"),
        ("/assets/explorer/templates/base.html", 404, "asset_not_found"),
        ("/assets/explorer/.hidden.js", 404, "asset_not_found"),
        ("/assets/verifier/%2e%2e/package.json", 404, "asset_not_found"),
        ("/assets/verifier/..%2fpackage.json", 404, "asset_not_found"),
        ("/assets/verifier/%2fetc%2fpasswd", 404, "asset_not_found"),
    ],
)
def test_assets_outside_the_served_sets_are_not_found(
    world: World, path: str, status: int, code: str
) -> None:
    response = httpx.get(f"{world.url}{path}")
    assert response.status_code == status, response.text[:300]
    assert response.json() == {"code": code, "message": response.json()["message"]}


def test_assets_have_their_media_types(world: World) -> None:
    for path, media in [
        ("/assets/explorer/explorer.css", "text/css"),
        ("/assets/explorer/verify-page.js", "text/javascript"),
        ("/assets/explorer/icon.svg", "image/svg+xml"),
        ("/assets/vendor/sm-crypto/sm2.js", "text/javascript"),
        ("/assets/vendor/redoc/redoc.standalone.js", "text/javascript"),
    ]:
        response = httpx.get(f"{world.url}{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media), (path, response.headers)


# -- without `make setup` --------------------------------------------------------------


@pytest.fixture
def bare_web(tmp_path: Path) -> Path:
    """A web/ directory without node_modules (a clone before `make setup`)."""
    web = tmp_path / "web"
    web.mkdir()
    shutil.copy(DEFAULT_WEB_DIR / "package.json", web / "package.json")
    shutil.copytree(DEFAULT_WEB_DIR / "src", web / "src")
    return web


def _asgi_get(app: Any, *paths: str) -> list[httpx.Response]:
    import anyio

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return [await client.get(path) for path in paths]

    return anyio.run(fetch)


def test_without_node_modules_the_pages_name_make_setup(tmp_path: Path, bare_web: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "var", web_dir=bare_web))
    docs, redoc, asset, verify, catalogue = _asgi_get(
        app,
        "/docs",
        "/redoc",
        "/assets/vendor/swagger-ui/swagger-ui-bundle.js",
        "/verify",
        "/",
    )
    for page in (docs, redoc):
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert 'data-code="web_assets_missing"' in page.text and "make setup" in page.text
    assert asset.status_code == 503 and asset.json()["code"] == "web_assets_missing"
    assert "make setup" in asset.json()["message"]
    assert verify.status_code == 200 and 'data-verdict="unavailable"' in verify.text
    assert "make setup" in verify.text
    assert "<script" not in verify.text and 'id="run" type="submit" disabled' in verify.text
    assert catalogue.status_code == 200  # the explorer's own pages need no npm package


def test_redoc_is_served_without_its_cdn_logo(world: World) -> None:
    served = httpx.get(f"{world.url}/assets/vendor/redoc/redoc.standalone.js")
    installed = (DEFAULT_WEB_DIR / "node_modules/redoc/bundles/redoc.standalone.js").read_bytes()
    assert b"https://cdn.redoc.ly/redoc/logo-mini.svg" in installed
    assert b"cdn.redoc.ly" not in served.content
    assert len(served.content) == len(installed) - len(
        b"https://cdn.redoc.ly/redoc/logo-mini.svg"
    ) + len(b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E")


def test_without_the_verifier_the_verify_page_says_so(tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "node_modules").symlink_to(DEFAULT_WEB_DIR / "node_modules")
    app = create_app(Settings(data_dir=tmp_path / "var", web_dir=web))
    verify, module, docs = _asgi_get(app, "/verify", "/assets/verifier/verify.js", "/docs")
    assert verify.status_code == 200 and 'data-verdict="unavailable"' in verify.text
    assert "web/src/verify.js" in verify.text and "<script" not in verify.text
    assert module.status_code == 404 and module.json()["code"] == "asset_not_found"
    assert docs.status_code == 200  # the rest of the assets are there
