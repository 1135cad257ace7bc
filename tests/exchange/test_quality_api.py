"""Quality reports on the exchange (docs/quality.md): a provider publishes its signed
report, an assessor (approved by an operator) countersigns it or signs a differing
one, the listing shows grade, digest, signer and countersigners; and every hostile
report is refused with its code, leaving no log entry."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import POSTGRES_URL, Exchange, error, running_exchange

from clients.quality import compute_report
from ledger.protocol.quality import (
    PERIOD_MS,
    QualityReport,
    TableSchema,
    Timeliness,
    timeliness_bps,
)
from ledger.records import canonical_json
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3, sm3_file

AS_OF = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COLUMNS = [
    {"name": "stop", "type": "string"},
    {"name": "day", "type": "date"},
    {"name": "boardings", "type": "integer"},
]
SCHEMA = TableSchema.from_dict(
    {
        "fields": [
            {"name": "stop", "type": "string", "constraints": {"required": True}},
            {"name": "day", "type": "date", "constraints": {"required": True}},
            {"name": "boardings", "type": "integer", "constraints": {"minimum": 0}},
        ],
        "primaryKey": ["stop", "day"],
    }
)


@dataclass
class Story:
    ex: Exchange
    owner: SM2PrivateKey
    listing_id: str
    report: QualityReport

    def report_body(self, key: SM2PrivateKey, **changes: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "listing_id": self.listing_id,
            "version": 1,
            "report": self.report.to_dict(),
            "report_sm3": self.report.digest(),
        }
        payload.update(changes)
        return self.ex.signed_body(key, "quality.reported", payload)

    def post_report(self, key: SM2PrivateKey, **changes: Any) -> Any:
        body = self.report_body(key, **changes)
        return self.ex.http(key).post(f"/listings/{self.listing_id}/quality-reports", json=body)

    def countersign(self, key: SM2PrivateKey, digest: str | None = None, **changes: Any) -> Any:
        digest = digest or self.report.digest()
        payload = {"listing_id": self.listing_id, "version": 1, "report_sm3": digest, **changes}
        body = self.ex.signed_body(key, "quality.countersigned", payload)
        path = f"/listings/{self.listing_id}/quality-reports/{digest}/countersignatures"
        return self.ex.http(key).post(path, json=body)

    def assessor(self, *, approved: bool = True) -> SM2PrivateKey:
        key = self.ex.register("assessor", "重庆数据资产评估中心")
        if approved:
            self.ex.approve(key)
        return key

    def listing(self) -> dict[str, Any]:
        response = self.ex.http().get(f"/listings/{self.listing_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def write_rides(path: Path, rows: int, *, bad_every: int = 0) -> Path:
    lines = ["stop,day,boardings"]
    for n in range(rows):
        boardings = -5 if bad_every and n % bad_every == 0 else 1000 + n
        lines.append(f"S{n % 7},2025-12-{n // 7 + 1:02d},{boardings}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def story(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Story]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    data = write_rides(tmp_path / "rides.csv", 140, bad_every=10)
    with running_exchange(live_server, tmp_path, request.param) as ex:
        owner = ex.provider()
        listing_id = ex.draft(
            owner,
            columns=COLUMNS,
            sample_rows=[],
            content_digest=sm3_file(data).hex(),
            byte_size=data.stat().st_size,
            row_count=140,
            update_frequency="daily",
        )
        for key, action in ((owner, "submit"), (ex.operator, "review"), (ex.operator, "publish")):
            assert ex.step(key, listing_id, action).status_code == 200
        report = compute_report(data, SCHEMA, update_frequency="daily", as_of=AS_OF)
        yield Story(ex, owner, listing_id, report)


def test_provider_reports_and_an_assessor_countersigns(story: Story) -> None:
    ex = story.ex
    assert story.listing()["quality"] is None
    response = story.post_report(story.owner)
    assert response.status_code == 201, response.text
    ex.assert_logged(response, story.owner, "quality.reported")
    digest = story.report.digest()
    assert response.json()["report"]["report_sm3"] == digest
    assert response.json()["report"]["grade"] == story.report.grade
    # the stored record's report is byte for byte what was signed
    entry = ex.entry(response.json()["log"]["index"])
    assert sm3(canonical_json(entry["record"]["record"]["payload"]["report"])).hex() == digest

    quality = story.listing()["quality"]
    assert quality == {
        "grade": story.report.grade,
        "score_bps": story.report.score_bps,
        "report_digest": digest,
        "signed_by": story.owner.key_id(),
        "countersigned_by": [],
        "disputed_by": [],
    }

    unapproved = story.assessor(approved=False)
    before = ex.log_size()
    error(story.countersign(unapproved), 403, "assessor_unverified")
    assert ex.log_size() == before
    assessor = story.assessor()
    response = story.countersign(assessor)
    assert response.status_code == 201, response.text
    ex.assert_logged(response, assessor, "quality.countersigned")
    assert story.listing()["quality"]["countersigned_by"] == [assessor.key_id()]
    error(story.countersign(assessor), 409, "already_countersigned")

    # an assessor whose recomputation differs signs its own report: a dispute
    other = story.assessor()
    differing = copy.deepcopy(story.report.to_dict())
    differing["as_of"] += 86_400_000
    parsed = QualityReport.from_dict(differing)
    error(story.post_report(other), 409, "countersign_instead")
    response = story.post_report(other, report=parsed.to_dict(), report_sm3=parsed.digest())
    assert response.status_code == 201, response.text
    assert response.json()["report"]["signer_role"] == "assessor"
    assert story.listing()["quality"]["disputed_by"] == [other.key_id()]

    view = ex.http().get(f"/listings/{story.listing_id}/quality").json()
    assert view["quality"] == story.listing()["quality"]
    assert [r["signer_role"] for r in view["reports"]] == ["assessor", "provider"]
    assert view["reports"][1]["report"] == story.report.to_dict()
    assert view["reports"][1]["countersigned_by"] == [assessor.key_id()]


def _tampered(report: QualityReport, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(report.to_dict())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def test_hostile_reports_are_refused_and_leave_nothing(story: Story) -> None:
    ex = story.ex
    report, digest = story.report, story.report.digest()
    buyer = ex.register("buyer")
    stranger = ex.provider("another provider")
    auditor = ex.register("auditor")
    assessor = story.assessor()
    tampered = _tampered(report, ("indicators", "accuracy", "passed"), 140)
    claimed_a = _tampered(report, ("grade",), "A" if report.grade != "A" else "B")
    other_data = _tampered(report, ("content_sm3",), "ef" * 32)
    other_schema = copy.deepcopy(report.to_dict())
    other_schema["table_schema"]["fields"][0]["type"] = "integer"
    newest, week = report.timeliness.newest_ms, PERIOD_MS["weekly"]
    weekly = dataclasses.replace(
        report,
        update_frequency="weekly",
        timeliness=Timeliness(newest, week, timeliness_bps(newest, week, AS_OF)),
    ).to_dict()
    cases: list[tuple[str, Any, int, str]] = [
        (
            "digest of other bytes",
            story.post_report(story.owner, report_sm3="00" * 32),
            422,
            "report_digest_mismatch",
        ),
        (
            "counts changed, digest kept",
            story.post_report(story.owner, report=tampered),
            422,
            "invalid_payload",
        ),
        (
            "a grade its score does not give",
            story.post_report(
                story.owner, report=claimed_a, report_sm3=sm3(canonical_json(claimed_a)).hex()
            ),
            422,
            "invalid_payload",
        ),
        (
            "a float in the report",
            ex.http(story.owner).post(
                f"/listings/{story.listing_id}/quality-reports",
                json=_float_body(story),
            ),
            400,
            "invalid_record",
        ),
        (
            "another listing in the record",
            story.post_report(story.owner, listing_id="00000000-0000-4000-8000-000000000000"),
            422,
            "target_mismatch",
        ),
        (
            "a version that does not exist",
            story.post_report(story.owner, version=2),
            422,
            "version_not_found",
        ),
        (
            "a report on other bytes",
            _post_doc(story, story.owner, other_data),
            422,
            "report_mismatch",
        ),
        (
            "a schema that is not the listing's columns",
            _post_doc(story, story.owner, other_schema),
            422,
            "report_mismatch",
        ),
        ("another update frequency", _post_doc(story, story.owner, weekly), 422, "report_mismatch"),
        ("a provider of another listing", story.post_report(stranger), 403, "not_a_provider"),
        ("a buyer", story.post_report(buyer), 403, "role_forbidden"),
        ("an auditor", story.post_report(auditor), 403, "role_forbidden"),
        ("a buyer countersigning", story.countersign(buyer), 403, "role_forbidden"),
        ("a provider countersigning", story.countersign(story.owner), 403, "role_forbidden"),
        ("countersigning no report", story.countersign(assessor), 404, "report_not_found"),
        (
            "countersigning another digest than the path",
            story.countersign(assessor, digest, report_sm3="11" * 32),
            422,
            "target_mismatch",
        ),
    ]
    before = ex.log_size()
    for desc, response, status, code in cases:
        assert response.status_code == status, (desc, response.text)
        assert response.json()["code"] == code, (desc, response.text)
    assert ex.log_size() == before
    assert story.listing()["quality"] is None
    assert story.post_report(story.owner).status_code == 201
    error(story.post_report(story.owner), 409, "report_exists")


def _post_doc(story: Story, key: SM2PrivateKey, report: dict[str, Any]) -> Any:
    """A report whose own bytes and digest agree (so only its content is wrong)."""
    digest = QualityReport.from_dict(report).digest()
    return story.post_report(key, report=report, report_sm3=digest)


def _float_body(story: Story) -> dict[str, Any]:
    body = story.report_body(story.owner)
    body["record"]["record"]["payload"]["report"]["indicators"]["accuracy"]["bps"] = 0.5
    return body
