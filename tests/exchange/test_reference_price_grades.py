"""The reference price's quality adjustment over real quality reports (SQLite;
PostgreSQL when ``TEST_POSTGRES_URL`` is set; docs/pricing.md, docs/quality.md):
a comparable's grade is the grade its listing shows (its newest provider report),
a D comparable of an A subject is adjusted by 11500/7000, the audit's replay of
the public log gives the same answer, and a report logged after an answer's
``as_of`` does not change that answer's grades."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, running_exchange
from test_orders import BACKENDS, publish
from test_quality_api import AS_OF, COLUMNS, SCHEMA, write_rides
from test_reference_price import reference, replayed, settle

from clients.quality import compute_report
from clients.reference_audit import audit_reference_price
from clients.sdk import ExchangeClient
from exchange.log.sequencer import integrate_pending
from exchange.refprice.grades import grades_of
from ledger.pricing_reference import DAY_MS, AsOf
from ledger.protocol.quality import QualityReport
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3_file


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def poor_rides(path: Path) -> Path:
    """Rides that grade D: half the stops missing, bad dates, negative counts."""
    lines = ["stop,day,boardings"]
    for n in range(140):
        if n % 2:
            lines.append(f",2025-12-{n // 7 + 1:02d},-5")
        else:
            lines.append(f"S{n % 7},2025-1x-01,-{n}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def publish_data(ex: Exchange, owner: SM2PrivateKey, data: Path, price: int) -> str:
    return publish(
        ex,
        owner,
        columns=COLUMNS,
        sample_rows=[],
        content_digest=sm3_file(data).hex(),
        byte_size=data.stat().st_size,
        row_count=140,
        update_frequency="daily",
        pricing={"model": "fixed", "price": price},
    )


def post_report(
    ex: Exchange, key: SM2PrivateKey, listing_id: str, report: QualityReport, timestamp: int
) -> None:
    payload = {
        "listing_id": listing_id,
        "version": 1,
        "report": report.to_dict(),
        "report_sm3": report.digest(),
    }
    body = ex.signed_body(key, "quality.reported", payload, timestamp=timestamp)
    response = ex.http(key).post(f"/listings/{listing_id}/quality-reports", json=body)
    assert response.status_code == 201, response.text


def shown_grade(ex: Exchange, listing_id: str) -> str | None:
    quality = ex.http().get(f"/listings/{listing_id}").json()["quality"]
    return None if quality is None else str(quality["grade"])


def by_listing(answer: dict[str, Any]) -> dict[str, set[tuple[str | None, int]]]:
    """Each comparable listing's (grade, quality_bp) pairs."""
    found: dict[str, set[tuple[str | None, int]]] = {}
    for c in answer["market"]["comparables"]:
        pair = (c["grade"], c["adjustments"]["quality_bp"])
        found.setdefault(c["listing_id"], set()).add(pair)
    return found


def test_grades_adjust_comparables_as_the_listings_show_them(ex: Exchange, tmp_path: Path) -> None:
    good_data = write_rides(tmp_path / "good.csv", 140, bad_every=10)  # newest: 2025-12-20
    poor_data = poor_rides(tmp_path / "poor.csv")
    fresh = AS_OF - 12 * DAY_MS  # 2025-12-20: timely, grade A
    a_report = compute_report(good_data, SCHEMA, update_frequency="daily", as_of=fresh)
    b_report = compute_report(good_data, SCHEMA, update_frequency="daily", as_of=AS_OF)  # stale
    d_report = compute_report(poor_data, SCHEMA, update_frequency="daily", as_of=AS_OF)
    assert (a_report.grade, b_report.grade, d_report.grade) == ("A", "B", "D")

    provider, other = ex.provider("subject"), ex.provider("other")
    assessor = ex.register("assessor", "评估中心")
    ex.approve(assessor)
    buyers = [ex.register("buyer", f"buyer{i}") for i in range(3)]
    subject = publish_data(ex, provider, good_data, 15_000)
    good = publish_data(ex, other, good_data, 10_000)
    poor = publish_data(ex, other, poor_data, 10_000)
    for i in range(3):
        settle(ex, buyers[i], good)
        settle(ex, buyers[i], poor)

    ungraded = reference(ex, subject)
    assert ungraded["market"]["method"]["subject_grade"] is None
    assert by_listing(ungraded) == {good: {(None, 10_000)}, poor: {(None, 10_000)}}

    now = int(time.time() * 1000)
    post_report(ex, provider, subject, a_report, now)
    post_report(ex, other, good, a_report, now)
    answer = reference(ex, subject)
    assert answer["market"]["method"]["subject_grade"] == "A"
    assert by_listing(answer) == {good: {("A", 10_000)}, poor: {(None, 10_000)}}
    assert answer == replayed(ex, subject, answer["as_of"])
    before_poor = answer

    post_report(ex, other, poor, d_report, now)
    answer = reference(ex, subject)
    # a D comparable of an A subject: round(10000 × 11500 / 7000)
    assert by_listing(answer) == {good: {("A", 10_000)}, poor: {("D", 16_429)}}
    adjusted = {c["adjusted_unit_price_fen"] for c in answer["market"]["comparables"]}
    assert max(adjusted) > 16_000  # 10000 fen × 1.6429, less freshness
    assert answer["market"]["median"] != before_poor["market"]["median"]
    assert answer == replayed(ex, subject, answer["as_of"])

    # the newest provider report is the grade, not the last logged one, and an
    # assessor's differing report (newer still) does not change it
    def good_report(as_of: int) -> QualityReport:
        return compute_report(good_data, SCHEMA, update_frequency="daily", as_of=as_of)

    post_report(ex, other, good, b_report, now + 1_000)
    post_report(ex, other, good, good_report(fresh + 1), now - 1_000)
    disputed = good_report(fresh + 2)
    assert disputed.grade == "A"
    post_report(ex, assessor, good, disputed, now + 2_000)
    assert ex.http().get(f"/listings/{good}").json()["quality"]["disputed_by"] == [
        assessor.key_id()
    ]
    assert shown_grade(ex, good) == "B"
    found = ex.http().get("/listings/search", params={"grade": "B"}).json()["items"]
    assert [hit["id"] for hit in found] == [good]  # search follows the same rule
    answer = reference(ex, subject)
    assert by_listing(answer)[good] == {("B", 11_500)}
    for listing_id in (subject, good, poor):
        assert shown_grade(ex, listing_id) == {subject: "A", good: "B", poor: "D"}[listing_id]
    assert answer == replayed(ex, subject, answer["as_of"])

    integrate_pending(ex.app.state.session_factory, ex.app.state.log_key)
    with ExchangeClient(ex.url) as client:
        audited = audit_reference_price(client, subject)
    assert audited.differences == []
    assert by_listing(audited.recomputed)[poor] == {("D", 16_429)}


def test_a_report_after_as_of_does_not_change_an_earlier_answer(
    ex: Exchange, tmp_path: Path
) -> None:
    data = write_rides(tmp_path / "good.csv", 140)
    poor_data = poor_rides(tmp_path / "poor.csv")
    provider, other = ex.provider("subject"), ex.provider("other")
    buyer = ex.register("buyer", "b")
    subject = publish_data(ex, provider, data, 15_000)
    poor = publish_data(ex, other, poor_data, 10_000)
    settle(ex, buyer, poor)
    now = int(time.time() * 1000)
    post_report(
        ex,
        provider,
        subject,
        compute_report(data, SCHEMA, update_frequency="daily", as_of=AS_OF),
        now,
    )
    earlier = reference(ex, subject)
    assert by_listing(earlier) == {poor: {(None, 10_000)}}

    d_report = compute_report(poor_data, SCHEMA, update_frequency="daily", as_of=AS_OF)
    post_report(ex, other, poor, d_report, now)
    later = reference(ex, subject)
    assert by_listing(later) == {poor: {("D", 16_429)}}

    versions = {(subject, 1), (poor, 1)}
    with ex.app.state.session_factory() as session:
        assert grades_of(session, versions, AsOf(**earlier["as_of"])) == {(subject, 1): "A"}
        assert grades_of(session, versions, AsOf(**later["as_of"])) == {
            (subject, 1): "A",
            (poor, 1): "D",
        }
    assert replayed(ex, subject, earlier["as_of"]) == earlier
    assert replayed(ex, subject, later["as_of"]) == later
