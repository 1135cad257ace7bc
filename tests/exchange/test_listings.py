"""The listing registration flow over a real uvicorn (SQLite, and PostgreSQL when
configured): every transition is exactly one logged, client-signed record; every
refusal (declarations, 核心 data, shares, samples, pricing, states, races) writes none."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import POSTGRES_URL, Exchange, error, listing_content, running_exchange

from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def exchange(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Any:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with running_exchange(
        live_server, tmp_path, request.param, listing_sample_max_bytes=2048
    ) as ex:
        yield ex


def _draft_body(owner: SM2PrivateKey, **overrides: Any) -> dict[str, Any]:
    return {"listing_id": str(uuid.uuid4()), **listing_content(owner.key_id(), **overrides)}


def test_full_flow_each_step_one_signed_record(exchange: Exchange) -> None:
    owner = exchange.provider()
    op = exchange.operator
    start = exchange.log_size()
    payload = _draft_body(owner)
    listing_id = payload["listing_id"]
    drafted = exchange.act(owner, "POST", "/listings", "listing.drafted", payload)
    assert drafted.status_code == 201, drafted.text
    assert drafted.json()["listing"]["state"] == "draft"
    assert drafted.json()["listing"]["pricing"] == {"model": "fixed", "price": 19_900}
    exchange.assert_logged(drafted, owner, "listing.drafted")

    edited = exchange.act(
        owner,
        "PUT",
        f"/listings/{listing_id}",
        "listing.edited",
        {**payload, "title": "重庆公交客流 2025 (修订)"},
    )
    assert edited.json()["listing"]["title"].endswith("(修订)")
    exchange.assert_logged(edited, owner, "listing.edited")

    steps = [
        (owner, "submit", "listing.submitted", "submitted"),
        (op, "review", "listing.review_started", "under_review"),
        (op, "publish", "listing.published", "published"),
    ]
    for key, action, record_type, state in steps:
        response = exchange.step(key, listing_id, action)
        assert response.status_code == 200, response.text
        assert response.json()["listing"]["state"] == state
        exchange.assert_logged(response, key, record_type)

    assert exchange.http().get(f"/listings/{listing_id}").json()["state"] == "published"

    version = exchange.act(
        owner,
        "POST",
        f"/listings/{listing_id}/versions",
        "listing.version_added",
        {
            "listing_id": listing_id,
            "version": 2,
            "content_digest": "cd" * 32,
            "row_count": 1_100_000,
            "byte_size": 57_000_000,
            "format": "csv",
        },
    )
    assert version.status_code == 201, version.text
    assert version.json()["listing"]["version"] == 2
    exchange.assert_logged(version, owner, "listing.version_added")
    history = exchange.http().get(f"/listings/{listing_id}/versions").json()
    assert [(v["version"], v["content_digest"]) for v in history] == [
        (1, "ab" * 32),
        (2, "cd" * 32),
    ]

    delisted = exchange.step(owner, listing_id, "delist", reason="superseded")
    assert delisted.json()["listing"]["state"] == "delisted"
    exchange.assert_logged(delisted, owner, "listing.delisted")
    # seven records, and the exchange's certificate.issued with the publication and v2
    assert exchange.log_size() == start + 9


def test_reject_then_edit_returns_to_draft(exchange: Exchange) -> None:
    owner = exchange.provider()
    listing_id = exchange.draft(owner)
    exchange.step(owner, listing_id, "submit")
    exchange.step(exchange.operator, listing_id, "review")
    error(exchange.step(exchange.operator, listing_id, "reject"), 422, "invalid_payload")
    rejected = exchange.step(exchange.operator, listing_id, "reject", reason="缺少来源说明")
    assert rejected.json()["listing"]["rejection_reason"] == "缺少来源说明"
    exchange.assert_logged(rejected, exchange.operator, "listing.rejected")
    payload = {"listing_id": listing_id, **listing_content(owner.key_id())}
    edited = exchange.act(owner, "PUT", f"/listings/{listing_id}", "listing.edited", payload)
    assert edited.json()["listing"]["state"] == "draft"
    assert edited.json()["listing"]["rejection_reason"] is None


@pytest.mark.parametrize(
    ("desc", "declarations", "missing"),
    [
        ("no classification", {"classification": None}, "classification"),
        ("pi without basis", {"personal_information": True}, "pi_legal_basis"),
        ("pi undeclared", {"personal_information": None}, "personal_information"),
        ("no source", {"source_legality": None}, "source_legality"),
        ("no purposes", {"permitted_purposes": []}, "permitted_purposes"),
    ],
)
def test_submitting_needs_every_declaration(
    exchange: Exchange, desc: str, declarations: dict[str, Any], missing: str
) -> None:
    """Submission makes publication's check, so a provider learns before the review;
    the refusal leaves the draft as it was and logs nothing."""
    owner = exchange.provider()
    base = listing_content(owner.key_id())["declarations"]
    listing_id = exchange.draft(owner, declarations={**base, **declarations})
    before = exchange.log_size()
    message = error(exchange.step(owner, listing_id, "submit"), 422, "declarations_incomplete")
    assert message.startswith("cannot submit without the declarations: "), desc
    assert missing in message, desc
    assert exchange.log_size() == before
    shown = exchange.http(owner).get(f"/listings/{listing_id}").json()
    assert shown["state"] == "draft"
    # completed by an edit, the same listing is submitted
    payload = {"listing_id": listing_id, **listing_content(owner.key_id())}
    edited = exchange.act(owner, "PUT", f"/listings/{listing_id}", "listing.edited", payload)
    assert edited.status_code == 200, edited.text
    assert exchange.step(owner, listing_id, "submit").json()["listing"]["state"] == "submitted"


def test_submitting_needs_a_licence(exchange: Exchange) -> None:
    owner = exchange.provider()
    listing_id = exchange.draft(owner, licence=None)
    message = error(exchange.step(owner, listing_id, "submit"), 422, "declarations_incomplete")
    assert "licence" in message


def test_publication_checks_the_declarations_again(exchange: Exchange) -> None:
    """A listing under review whose declarations are no longer complete (as stored
    before submission checked them) is not published."""
    from sqlalchemy import update
    from sqlmodel import col

    from exchange.listings.models import Listing

    owner = exchange.provider()
    listing_id = exchange.draft(owner)
    exchange.step(owner, listing_id, "submit")
    exchange.step(exchange.operator, listing_id, "review")
    with exchange.app.state.session_factory() as session:
        session.execute(update(Listing).where(col(Listing.id) == listing_id).values(licence=None))
        session.commit()
    before = exchange.log_size()
    message = error(
        exchange.step(exchange.operator, listing_id, "publish"), 422, "declarations_incomplete"
    )
    assert message.startswith("cannot publish without the declarations: licence")
    assert exchange.log_size() == before


def test_a_published_listing_is_not_edited(exchange: Exchange) -> None:
    owner = exchange.provider()
    listing_id = exchange.draft(owner)
    for key, action in ((owner, "submit"), (exchange.operator, "review")):
        exchange.step(key, listing_id, action)
    exchange.step(exchange.operator, listing_id, "publish")
    before = exchange.log_size()
    payload = {"listing_id": listing_id, **listing_content(owner.key_id())}
    refused = exchange.act(owner, "PUT", f"/listings/{listing_id}", "listing.edited", payload)
    message = error(refused, 409, "invalid_state")
    assert "published" in message and "new content version" in message
    assert exchange.log_size() == before


def test_draft_refusals_write_nothing(exchange: Exchange) -> None:
    owner = exchange.provider()
    co = exchange.provider("co")
    buyer = exchange.register("buyer")
    before = exchange.log_size()
    decl = listing_content(owner.key_id())["declarations"]
    big_rows = [{"stop": "x" * 100, "boardings": i} for i in range(30)]
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "核心 data",
            {"declarations": {**decl, "classification": "核心"}},
            422,
            "core_data_forbidden",
        ),
        (
            "shares",
            {"providers": [{"key_id": owner.key_id(), "share_bps": 9_999}]},
            422,
            "invalid_shares",
        ),
        (
            "owner not a provider",
            {"providers": [{"key_id": co.key_id(), "share_bps": 10_000}]},
            422,
            "invalid_shares",
        ),
        (
            "buyer as co-provider",
            {
                "providers": [
                    {"key_id": owner.key_id(), "share_bps": 5_000},
                    {"key_id": buyer.key_id(), "share_bps": 5_000},
                ]
            },
            422,
            "unknown_provider",
        ),
        ("float price", {"pricing": {"model": "fixed", "price": "19900"}}, 422, "invalid_pricing"),
        ("bad pricing", {"pricing": {"model": "auction"}}, 422, "invalid_pricing"),
        ("bad tiers", {"pricing": {"model": "tiers", "tiers": []}}, 422, "invalid_pricing"),
        ("sample too large", {"sample_rows": big_rows}, 413, "sample_too_large"),
        ("sample unknown column", {"sample_rows": [{"nope": 1}]}, 422, "invalid_sample"),
        ("digest not hex", {"content_digest": "XYZ"}, 422, "invalid_payload"),
        ("negative rows", {"row_count": -1}, 422, "invalid_payload"),
        ("string rows", {"row_count": "5"}, 422, "invalid_payload"),
        ("no columns", {"columns": []}, 422, "invalid_payload"),
    ]
    for desc, overrides, status, code in cases:
        response = exchange.act(
            owner, "POST", "/listings", "listing.drafted", _draft_body(owner, **overrides)
        )
        assert (response.status_code, response.json()["code"]) == (status, code), (
            desc,
            response.text,
        )
    assert exchange.log_size() == before
    ok = _draft_body(
        owner,
        providers=[
            {"key_id": owner.key_id(), "share_bps": 7_000},
            {"key_id": co.key_id(), "share_bps": 3_000},
        ],
    )
    created = exchange.act(owner, "POST", "/listings", "listing.drafted", ok)
    assert created.status_code == 201, created.text
    error(exchange.act(owner, "POST", "/listings", "listing.drafted", ok), 409, "listing_exists")
    # the co-provider sees the draft, a stranger does not
    assert exchange.http(co).get(f"/listings/{ok['listing_id']}").status_code == 200
    error(exchange.http(buyer).get(f"/listings/{ok['listing_id']}"), 404, "listing_not_found")
    assert exchange.log_size() == before + 1


def test_state_machine_refusals(exchange: Exchange) -> None:
    owner = exchange.provider()
    op = exchange.operator
    listing_id = exchange.draft(owner)
    error(exchange.step(op, listing_id, "review"), 409, "invalid_state")
    error(exchange.step(op, listing_id, "publish"), 409, "invalid_state")
    error(exchange.step(owner, listing_id, "delist", reason="x"), 409, "invalid_state")
    exchange.step(owner, listing_id, "submit")
    error(exchange.step(owner, listing_id, "submit"), 409, "invalid_state")
    payload = {"listing_id": listing_id, **listing_content(owner.key_id())}
    error(
        exchange.act(owner, "PUT", f"/listings/{listing_id}", "listing.edited", payload),
        409,
        "invalid_state",
    )
    other = str(uuid.uuid4())
    error(
        exchange.act(
            op,
            "POST",
            f"/listings/{listing_id}/review",
            "listing.review_started",
            {"listing_id": other},
        ),
        422,
        "target_mismatch",
    )
    error(
        exchange.act(
            op,
            "POST",
            f"/listings/{listing_id}/review",
            "listing.published",
            {"listing_id": listing_id},
        ),
        422,
        "wrong_record_type",
    )


def test_unverified_provider_drafts_but_cannot_submit(exchange: Exchange) -> None:
    unverified = exchange.register("provider")
    listing_id = exchange.draft(unverified)
    error(exchange.step(unverified, listing_id, "submit"), 403, "provider_unverified")


def test_version_must_be_next(exchange: Exchange) -> None:
    owner = exchange.provider()
    listing_id = exchange.published(owner)
    body = {
        "listing_id": listing_id,
        "version": 3,
        "content_digest": "ef" * 32,
        "row_count": 1,
        "byte_size": 1,
        "format": "csv",
    }
    path = f"/listings/{listing_id}/versions"
    error(exchange.act(owner, "POST", path, "listing.version_added", body), 409, "version_conflict")


def test_racing_transitions_store_exactly_one(exchange: Exchange) -> None:
    """Publish and reject raced by two operators' requests: one wins, the other is
    refused (409), and the log holds only the winner's record."""
    owner = exchange.provider()
    listing_id = exchange.draft(owner)
    exchange.step(owner, listing_id, "submit")
    exchange.step(exchange.operator, listing_id, "review")
    before = exchange.log_size()
    results: list[Any] = []
    barrier = threading.Barrier(6)

    def run(action: str) -> None:
        barrier.wait()
        extra = {"reason": "no"} if action == "reject" else {}
        results.append(exchange.step(exchange.operator, listing_id, action, **extra))

    threads = [threading.Thread(target=run, args=(a,)) for a in ["publish", "reject"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409, 409, 409, 409, 409], [r.text for r in results]
    [won] = [r for r in results if r.status_code == 200]
    published = won.json()["listing"]["state"] == "published"  # with its certificate
    assert exchange.log_size() == before + (2 if published else 1)


def test_listing_visibility_and_filters(exchange: Exchange) -> None:
    owner = exchange.provider()
    other = exchange.provider("other")
    published = exchange.published(owner)
    draft = exchange.draft(owner)
    anon = exchange.http().get("/listings").json()["items"]
    assert [i["id"] for i in anon] == [published]
    mine = (
        exchange.http(owner).get("/listings", params={"provider": owner.key_id()}).json()["items"]
    )
    assert {i["id"] for i in mine} == {published, draft}
    theirs = exchange.http(other).get("/listings", params={"state": "draft"}).json()["items"]
    assert theirs == []
    ops = exchange.http(exchange.operator).get("/listings", params={"state": "draft"}).json()
    assert [i["id"] for i in ops["items"]] == [draft]
    error(exchange.http().get(f"/listings/{draft}"), 404, "listing_not_found")
    error(exchange.http().get("/listings", params={"state": "nope"}), 422, "invalid_request")
