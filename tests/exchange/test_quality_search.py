"""Search by quality grade (docs/quality.md): the ``grade`` filter and facet on both
backends and every facet plan (whole index from the trigger-kept counts, grouped over
matches), following the current version's newest provider report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, running_exchange
from test_orders import BACKENDS

from exchange import records
from exchange.log.batch import take_staged
from ledger.protocol.quality import Indicator, QualityReport, TableSchema, Timeliness
from ledger.sm2 import SM2PrivateKey

DIGEST = "ab" * 32  # test_auth_support.listing_content's
SCHEMA = TableSchema.from_dict(
    {"fields": [{"name": "stop"}, {"name": "boardings", "type": "integer"}]}
)


def graded(passed: int) -> QualityReport:
    """A report on listing_content's bytes whose ratios are all ``passed`` of 10."""
    ratio = Indicator(passed, 10)
    return QualityReport(
        content_sm3=DIGEST,
        byte_size=52_000_000,
        rows=10,
        table_schema=SCHEMA,
        update_frequency="monthly",
        as_of=0,
        conformity=ratio,
        completeness=ratio,
        accuracy=ratio,
        consistency=ratio,
        timeliness=Timeliness(None, 31 * 86_400_000, 0),
        accessibility=ratio,
    )


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def publish(ex: Exchange, owner: SM2PrivateKey, title: str) -> str:
    listing_id = ex.draft(owner, title=title)
    for key, action in ((owner, "submit"), (ex.operator, "review"), (ex.operator, "publish")):
        assert ex.step(key, listing_id, action).status_code == 200
    return listing_id


def report(ex: Exchange, owner: SM2PrivateKey, listing_id: str, result: QualityReport) -> None:
    payload = {
        "listing_id": listing_id,
        "version": 1,
        "report": result.to_dict(),
        "report_sm3": result.digest(),
    }
    body = ex.signed_body(owner, "quality.reported", payload)
    response = ex.http(owner).post(f"/listings/{listing_id}/quality-reports", json=body)
    assert response.status_code == 201, response.text


def search(ex: Exchange, **params: Any) -> dict[str, Any]:
    response = ex.http().get("/listings/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def grades(page: dict[str, Any]) -> dict[str, int]:
    return {f["value"]: f["count"] for f in page["facets"]["grade"]}


def test_grade_filter_and_facet(ex: Exchange) -> None:
    owner = ex.provider()
    a1, a2, d, none = (publish(ex, owner, f"公交客流 {n}") for n in range(4))
    top, bottom = graded(10), graded(0)
    assert (top.grade, bottom.grade) == ("A", "D")
    for listing_id, result in ((a1, top), (a2, top), (d, bottom)):
        report(ex, owner, listing_id, result)

    whole = search(ex)  # no text, no filter: the counts the triggers keep
    assert grades(whole) == {"A": 2, "D": 1}
    assert whole["total"] == 4
    texted = search(ex, q="公交")  # grouped over the matches
    assert grades(texted) == {"A": 2, "D": 1}
    only_a = search(ex, grade="A")
    assert {hit["id"] for hit in only_a["items"]} == {a1, a2}
    assert grades(only_a) == {"A": 2}
    assert [hit["id"] for hit in search(ex, grade="D", q="客流")["items"]] == [d]
    assert search(ex, grade="B")["total"] == 0

    # a newer report moves the listing to its new grade; the counts follow
    report(ex, owner, a2, graded(8))
    assert grades(search(ex)) == {"A": 1, "C": 1, "D": 1}
    assert {hit["id"] for hit in search(ex, grade="C")["items"]} == {a2}

    # a new version has no report yet: it leaves the grades
    version = {
        "listing_id": a1,
        "version": 2,
        "content_digest": "cd" * 32,
        "row_count": 5,
        "byte_size": 50,
        "format": "csv",
    }
    response = ex.act(owner, "POST", f"/listings/{a1}/versions", "listing.version_added", version)
    assert response.status_code == 201, response.text
    assert grades(search(ex)) == {"C": 1, "D": 1}
    assert ex.http().get(f"/listings/{a1}").json()["quality"] is None
    assert none not in {hit["id"] for hit in search(ex, grade="A")["items"]}


def test_a_bad_grade_is_refused(ex: Exchange) -> None:
    response = ex.http().get("/listings/search", params={"grade": "E"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_concurrent_reports_leave_search_on_the_listings_grade(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older report whose request passed its checks before a newer one committed
    must not put its own grade in the index when it commits after it: the listing
    shows the newest report's grade, and so does search."""
    owner, partner = ex.provider("owner"), ex.provider("partner")
    shares = [
        {"key_id": owner.key_id(), "share_bps": 5_000},
        {"key_id": partner.key_id(), "share_bps": 5_000},
    ]
    listing_id = ex.draft(owner, title="公交客流", providers=shares)
    for key, action in ((owner, "submit"), (ex.operator, "review"), (ex.operator, "publish")):
        assert ex.step(key, listing_id, action).status_code == 200

    def body(who: SM2PrivateKey, result: QualityReport) -> Any:
        payload = {
            "listing_id": listing_id,
            "version": 1,
            "report": result.to_dict(),
            "report_sm3": result.digest(),
        }
        return ex.signed_body(who, "quality.reported", payload)

    older = body(owner, graded(10))  # signed first: grade A
    time.sleep(0.01)
    newer = body(partner, graded(0))  # signed later: grade D, the newest

    real = take_staged  # (what exchange.records calls)
    ran: list[int] = []

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not ran:  # the older report is staged; the newer one commits before it
            ran.append(1)
            path = f"/listings/{listing_id}/quality-reports"
            assert ex.http(partner).post(path, json=newer).status_code == 201
        return real(*args, **kwargs)

    monkeypatch.setattr(records, "take_staged", meanwhile)
    response = ex.http(owner).post(f"/listings/{listing_id}/quality-reports", json=older)
    assert response.status_code == 201, response.text
    assert ran == [1]
    assert ex.http().get(f"/listings/{listing_id}").json()["quality"]["grade"] == "D"
    assert [hit["id"] for hit in search(ex, grade="D")["items"]] == [listing_id]
    assert grades(search(ex)) == {"D": 1}
