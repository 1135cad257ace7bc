"""The explorer in a real browser: Playwright driving Debian's Chromium
(``/usr/bin/chromium``, installed by ``.ci/run``; nothing is downloaded) against a
real exchange (uvicorn, SQLite file, anvil) holding a small story.

Every page is loaded at 1280 and 390 px wide with every request that is not to
127.0.0.1 aborted and recorded: none may be attempted (no CDN, no font service),
no console error may appear, the explorer's own pages must not scroll sideways
at phone width, and each page's content is checked. Screenshots of every page at
both widths are written to ``var/test-output/screenshots/<page>-<width>.png``
(git-ignored). Then the explorer is clicked through (search, facets, listing,
provider, log, verify) and receipts are verified in the page: a real one, and
tampered ones that must fail at the right step.

Without ``/usr/bin/chromium`` the module is skipped, saying so.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    Route,
    expect,
    sync_playwright,
)
from test_explorer_support import (
    COMPUTATION_TITLE,
    DRAFT_TITLE,
    FIXED_TITLE,
    PROVIDER_NAME,
    World,
    explorer_world,
)
from test_raw_append_support import enrol

from clients.signing import SM2RequestSigner
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.api.explorer.assets import DEFAULT_WEB_DIR, VERIFIER_ENTRY
from exchange.api.explorer.verify_page import STEPS
from exchange.app import create_app
from exchange.settings import Settings
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "var" / "test-output" / "screenshots"
WIDTHS = (1280, 390)
VERIFIER = DEFAULT_WEB_DIR / "src" / VERIFIER_ENTRY

pytestmark = [
    pytest.mark.chain,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no browser: {CHROMIUM} is absent (apt-get install chromium; .ci/run does)",
    ),
]

needs_verifier = pytest.mark.skipif(
    not VERIFIER.exists(),
    reason=f"{VERIFIER.relative_to(REPO)} (the in-browser verifier library) is not here yet",
)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, devnet: Devnet, live_server: Any
) -> Iterator[World]:
    with explorer_world(tmp_path_factory.mktemp("explorer"), devnet, live_server) as world:
        yield world


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Visit:
    page: Page
    console_errors: list[str]
    outside: list[str]
    """Requests to anywhere but 127.0.0.1: aborted, and a failure of the test."""

    def check_clean(self) -> None:
        assert self.outside == [], f"requests outside 127.0.0.1: {self.outside}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"


@contextmanager
def visit(browser: Browser, width: int = 1280) -> Iterator[Visit]:
    """A fresh browser context ``width`` px wide that lets only 127.0.0.1 be reached."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    outside: list[str] = []

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield Visit(page, errors, outside)
    finally:
        context.close()


# -- every page, at both widths --------------------------------------------------------


def _catalogue(page: Page, world: World) -> None:
    expect(page.locator("h1")).to_have_text("数据目录 Catalogue")
    expect(page.locator("article.hit")).to_have_count(2)
    expect(page.locator("main")).to_contain_text(FIXED_TITLE)
    expect(page.locator("main")).not_to_contain_text(DRAFT_TITLE)
    expect(page.locator("section.facet[data-facet='custody'] li")).to_have_count(2)
    expect(page.locator("article.hit").first).to_contain_text(PROVIDER_NAME)


def _listing(page: Page, world: World) -> None:
    expect(page.locator("h1")).to_have_text(FIXED_TITLE)
    expect(page.locator("#schema tbody tr")).to_have_count(6)
    expect(page.locator("#sample")).to_contain_text("解放碑")
    expect(page.locator("#custody")).to_contain_text("exchange")
    expect(page.locator("#price")).to_contain_text("¥600.00")
    expect(page.locator("#providers li")).to_have_count(2)


def _computation_listing(page: Page, world: World) -> None:
    expect(page.locator("h1")).to_have_text(COMPUTATION_TITLE)
    expect(page.locator("#computation")).to_contain_text("laplace")
    expect(page.locator("#custody")).to_contain_text("provider")


def _participant(page: Page, world: World) -> None:
    expect(page.locator("h1")).to_have_text(PROVIDER_NAME)
    expect(page.locator(".role")).to_have_text("provider")
    expect(page.locator("#listings article")).to_have_count(2)


def _log(page: Page, world: World) -> None:
    expect(page.locator("[data-tree-size]")).to_have_text(str(world.tree_size))
    expect(page.locator("tr[data-index]")).to_have_count(world.tree_size)
    row = page.locator(f"tr[data-index='{world.order_index}']")
    expect(row).to_contain_text("order.placed")


def _anchors(page: Page, world: World) -> None:
    final = page.locator(f"tr[data-tree-size='{world.tree_size}']")
    expect(final).to_have_attribute("data-state", "final")
    expect(final.locator("td.confirmations")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#chain")).to_contain_text(world.registry)


def _verify(page: Page, world: World) -> None:
    expect(page.locator("#rpc-url")).to_have_value(world.rpc_url)
    expect(page.locator("#registry")).to_have_value(world.registry)
    expect(page.locator("#steps li")).to_have_count(5)


def _operator(page: Page, world: World) -> None:
    # the figures of /metrics at a glance: the story's requests, log entries, anchors…
    expect(page.locator("#figures")).to_have_attribute("data-figures", re.compile(r"^[1-9]\d*$"))
    expect(page.locator("#figures")).to_contain_text("Pending payouts")


def _error(page: Page, world: World) -> None:
    expect(page.locator("main")).to_have_attribute("data-code", "listing_not_found")


def _docs(page: Page, world: World) -> None:
    expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
    assert page.locator(".opblock").count() >= 40


def _redoc(page: Page, world: World) -> None:
    expect(page.locator("h1", has_text="Shancheng Data Exchange")).to_be_visible(timeout=20_000)


PAGES: dict[str, tuple[Callable[[World], str], Callable[[Page, World], None]]] = {
    "catalogue": (lambda w: "/", _catalogue),
    "listing": (lambda w: f"/explore/listings/{w.fixed_listing}", _listing),
    "listing-computation": (
        lambda w: f"/explore/listings/{w.computation_listing}",
        _computation_listing,
    ),
    "participant": (lambda w: f"/explore/participants/{w.provider}", _participant),
    "log": (lambda w: "/log", _log),
    "anchors": (lambda w: "/anchors", _anchors),
    "verify": (lambda w: "/verify", _verify),
    "operator": (lambda w: "/operator", _operator),
    "not-found": (lambda w: f"/explore/listings/{w.draft_listing}", _error),
    "docs": (lambda w: "/docs", _docs),
    "redoc": (lambda w: "/redoc", _redoc),
}
THIRD_PARTY = {"docs", "redoc"}
"""Pages laid out by Swagger UI and ReDoc themselves (not held to the 390 px rule)."""
STATUS = {"not-found": 404}
"""Pages answered with another status than 200; Chromium reports the document's own
status on the console, the one console error such a page is allowed."""


def _screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=full_page)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_renders_locally_without_errors(
    world: World, browser: Browser, name: str, width: int
) -> None:
    path, check = PAGES[name]
    with visit(browser, width) as v:
        response = v.page.goto(world.url + path(world))
        assert response is not None and response.status == STATUS.get(name, 200)
        check(v.page, world)
        v.page.wait_for_load_state("networkidle")
        if name not in THIRD_PARTY:
            overflow = v.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways by {overflow} px at {width} px"
        # the API references are long: their first screen only
        _screenshot(v.page, name, full_page=name not in THIRD_PARTY)
        if name in STATUS:
            status = STATUS[name]
            assert v.console_errors == [
                f"Failed to load resource: the server responded with a status of {status} "
                "(Not Found)"
            ]
            v.console_errors.clear()
        v.check_clean()


# -- clicking through ------------------------------------------------------------------


def test_search_facets_listing_and_provider_by_clicking(world: World, browser: Browser) -> None:
    with visit(browser) as v:
        page = v.page
        page.goto(world.url + "/")
        page.fill("#q", "可算不可见")
        page.press("#q", "Enter")
        page.wait_for_url(re.compile(r"q=%E5%8F%AF"))
        expect(page.locator("article.hit")).to_have_count(1)
        expect(page.locator("article.hit h2")).to_have_text(COMPUTATION_TITLE)

        page.goto(world.url + "/")
        page.locator("section.facet[data-facet='custody'] a", has_text="交易所 exchange").click()
        page.wait_for_url(re.compile(r"custody=exchange"))
        expect(page.locator("article.hit")).to_have_count(1)
        page.locator("article.hit h2 a").click()
        expect(page.locator("h1")).to_have_text(FIXED_TITLE)
        page.locator("#providers li a", has_text=PROVIDER_NAME).click()
        expect(page.locator("h1")).to_have_text(PROVIDER_NAME)
        page.locator("#listings a", has_text=COMPUTATION_TITLE).click()
        expect(page.locator("#computation")).to_be_visible()
        v.check_clean()


def test_the_log_pages_older_entries_and_links_to_verification(
    world: World, browser: Browser
) -> None:
    with visit(browser) as v:
        page = v.page
        page.goto(world.url + "/log?limit=5")
        expect(page.locator("tr[data-index]")).to_have_count(5)
        page.locator("a[rel='next']").click()
        expect(page.locator("tr[data-index]").first).to_have_attribute(
            "data-index", str(world.tree_size - 6)
        )
        page.goto(world.url + "/log")
        page.locator(f"tr[data-index='{world.order_index}'] a", has_text="验证 Verify").click()
        page.wait_for_url(re.compile(rf"/verify\?index={world.order_index}$"))
        expect(page.locator("#verify-form")).to_have_attribute("data-index", str(world.order_index))


# -- verifying in the page -------------------------------------------------------------


def _bundle(world: World) -> dict[str, Any]:
    response = httpx.get(f"{world.url}/receipts/{world.order_index}")
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def _flip(hex_digest: str) -> str:
    return ("0" if hex_digest[0] != "0" else "1") + hex_digest[1:]


def _verdict(page: Page) -> tuple[str, str | None]:
    result = page.locator("#result")
    expect(result).to_have_attribute(
        "data-verdict", re.compile(r"^(verified|failed|error)$"), timeout=30_000
    )
    return str(result.get_attribute("data-verdict")), result.get_attribute("data-step")


@needs_verifier
@pytest.mark.parametrize("width", WIDTHS)
def test_a_real_receipt_verifies_in_the_page_step_by_step(
    world: World, browser: Browser, width: int
) -> None:
    with visit(browser, width) as v:
        v.page.goto(f"{world.url}/verify?index={world.order_index}")
        assert _verdict(v.page) == ("verified", "chain_anchor")
        expect(v.page.locator("#subject")).to_contain_text("order.placed")
        _screenshot(v.page, "verify-verified")
        steps = v.page.locator("#steps li")
        expect(steps).to_have_count(5)
        order = [steps.nth(i).get_attribute("data-step") for i in range(5)]
        assert order == list(STEPS)
        for i in range(5):
            expect(steps.nth(i)).to_have_attribute("data-ok", "true")
        expect(v.page.locator("li[data-step='inclusion'] table.compared")).to_contain_text(
            _bundle(world)["checkpoint"]["root"]
        )
        v.check_clean()


def _tamper_payload(b: dict[str, Any]) -> None:
    b["record"]["record"]["payload"]["order_id"] = "00000000-0000-4000-8000-000000000000"


def _tamper_leaf_hash(b: dict[str, Any]) -> None:
    b["promise"]["leaf_hash"] = _flip(b["promise"]["leaf_hash"])


def _tamper_inclusion(b: dict[str, Any]) -> None:
    b["inclusion"]["hashes"][0] = _flip(b["inclusion"]["hashes"][0])


def _tamper_checkpoint_signature(b: dict[str, Any]) -> None:
    b["checkpoint"]["signature"] = b["promise"]["signature"]


@needs_verifier
@pytest.mark.parametrize(
    ("tamper", "step"),
    [
        (_tamper_payload, "actor_signature"),
        (_tamper_leaf_hash, "leaf_hash"),
        (_tamper_inclusion, "inclusion"),
        (_tamper_checkpoint_signature, "checkpoint_signature"),
    ],
)
def test_a_tampered_receipt_fails_at_the_right_step(
    world: World, browser: Browser, tamper: Callable[[dict[str, Any]], None], step: str
) -> None:
    bundle = copy.deepcopy(_bundle(world))
    tamper(bundle)
    with visit(browser) as v:
        v.page.goto(f"{world.url}/verify")
        v.page.fill("#bundle", json.dumps(bundle))
        v.page.click("#run")
        assert _verdict(v.page) == ("failed", step)
        expect(v.page.locator(f"li[data-step='{step}']")).to_have_attribute("data-ok", "false")
        later = v.page.locator(f"li[data-step='{step}'] ~ li")
        for i in range(later.count()):
            expect(later.nth(i)).to_have_attribute("data-ok", "")  # not run
        _screenshot(v.page, f"verify-failed-{step}")
        v.check_clean()


@needs_verifier
def test_another_registry_fails_at_the_chain_anchor(
    world: World, browser: Browser, devnet: Devnet, tmp_path: Path
) -> None:
    other, _ = ensure_registry(devnet.rpc_url, tmp_path / "other-deployment.json")
    assert other.registry_address.lower() != world.registry.lower()
    with visit(browser) as v:
        v.page.goto(f"{world.url}/verify")
        v.page.fill("#bundle", json.dumps(_bundle(world)))
        v.page.fill("#registry", other.registry_address)
        v.page.click("#run")
        assert _verdict(v.page) == ("failed", "chain_anchor")


@needs_verifier
def test_a_dropped_bundle_file_verifies(world: World, browser: Browser) -> None:
    with visit(browser, 390) as v:
        v.page.goto(f"{world.url}/verify")
        payload: FilePayload = {
            "name": "receipt.json",
            "mimeType": "application/json",
            "buffer": json.dumps(_bundle(world)).encode(),
        }
        v.page.set_input_files("#bundle-file", files=[payload])
        assert _verdict(v.page) == ("verified", "chain_anchor")
        v.check_clean()


def test_text_that_is_not_json_fails_before_any_step(world: World, browser: Browser) -> None:
    with visit(browser) as v:
        v.page.goto(f"{world.url}/verify")
        if v.page.locator("#result").get_attribute("data-verdict") == "unavailable":
            pytest.skip(f"the verify page has no verifier here ({VERIFIER} is absent)")
        v.page.fill("#bundle", "{not json")
        v.page.click("#run")
        assert _verdict(v.page) == ("failed", "format")
        expect(v.page.locator("#steps li[data-ok='']")).to_have_count(5)
        v.check_clean()


def test_a_receipt_not_anchored_yet_says_to_retry(
    browser: Browser, live_server: Any, tmp_path: Path
) -> None:
    """An exchange without a chain integrates entries but anchors none: the receipt
    of its entry 0 is pending, and the page says so (and when to retry) instead of
    failing a verification; an entry that does not exist is named."""
    app = create_app(Settings(data_dir=tmp_path, sequencer_interval=0.05))
    author = SM2PrivateKey.generate()
    enrol(app.state.engine, author)
    with live_server(app) as url:
        signed = sign_record(author, "note.added", {"text": "尚未锚定 not anchored"})
        appended = httpx.post(
            f"{url}/log/records",
            json={"record": signed.to_dict(), "public_key": author.public_key().to_pem().decode()},
            auth=SM2RequestSigner(author),
        )
        assert appended.status_code == 201, appended.text
        assert httpx.get(f"{url}/receipts/0").json()["code"] == "receipt_pending"
        with visit(browser) as v:
            v.page.goto(f"{url}/verify?index=0")
            result = v.page.locator("#result")
            expect(result).to_have_attribute("data-verdict", "pending")
            expect(result).to_contain_text("Retry")
            v.page.goto(f"{url}/verify?index=7")
            expect(result).to_have_attribute("data-verdict", "error")
            expect(result).to_contain_text("entry_not_found")
            # the browser reports the two refused fetches; nothing else may appear
            assert v.console_errors == [
                "Failed to load resource: the server responded with a status of 409 (Conflict)",
                "Failed to load resource: the server responded with a status of 404 (Not Found)",
            ]
            v.console_errors.clear()
            v.check_clean()
