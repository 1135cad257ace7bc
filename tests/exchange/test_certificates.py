"""Registration certificates over a real uvicorn (SQLite, and PostgreSQL when
configured): issued with each publication in the same transaction, numbered
gap-free under concurrency, every lifecycle transition one signed record, every
refusal (wrong signer, wrong state, unknown receiver, shares) writing nothing, and
a cancelled or expired certificate stopping quotes and orders."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_auth_support import Exchange, error, running_exchange
from test_orders import BACKENDS, deposit, order_body, place, publish, quote
from test_refusals import database_state

from ledger.records import SignedRecord
from ledger.sm2 import SM2PrivateKey

YEAR_MS = 365 * 86_400_000


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def number_of(ex: Exchange, listing_id: str) -> str:
    number = ex.http().get(f"/listings/{listing_id}").json()["certificate"]
    assert isinstance(number, str)
    return number


def certificate(ex: Exchange, number: str) -> dict[str, Any]:
    response = ex.http().get(f"/certificates/{number}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def act(
    ex: Exchange,
    key: SM2PrivateKey,
    number: str,
    record_type: str,
    status: int = 200,
    **payload: Any,
) -> httpx.Response:
    response = ex.act(
        key, "POST", f"/certificates/{number}/records", record_type, {"number": number, **payload}
    )
    assert response.status_code == status, response.text
    return response


def two_provider_listing(ex: Exchange) -> tuple[SM2PrivateKey, SM2PrivateKey, str]:
    owner, partner = ex.provider("owner"), ex.provider("partner")
    shares = [
        {"key_id": owner.key_id(), "share_bps": 7_000},
        {"key_id": partner.key_id(), "share_bps": 3_000},
    ]
    return owner, partner, publish(ex, owner, providers=shares)


def holders(cert: dict[str, Any], right: str) -> dict[str, int]:
    return {h["participant"]: h["share_bps"] for h in cert["rights"][right]}


# --------------------------------------------------------------------------- issuance


def test_publication_issues_the_certificate_next_to_its_record(ex: Exchange) -> None:
    owner, partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    assert re.fullmatch(r"SC-20[0-9]{2}-000001", number)
    view = certificate(ex, number)
    cert = view["certificate"]
    assert cert["listing_id"] == listing_id and cert["version"] == 1
    assert cert["content_digest"] == "ab" * 32 and cert["state"] == "active"
    assert cert["expired"] is False and cert["pending"] is None
    expected = {owner.key_id(): 7_000, partner.key_id(): 3_000}
    for right in ("holding", "processing", "operation"):
        assert holders(cert, right) == expected
    assert cert["scope"] == {
        "category": "transport",
        "purposes": ["research", "planning"],
        "text": "No re-identification.",
    }
    assert cert["valid_until"] - cert["valid_from"] == 3 * YEAR_MS
    [issued] = view["history"]
    assert issued["type"] == "certificate.issued"
    # the exchange's record, right after the publication, carrying the whole certificate
    stored = ex.entry(issued["index"])
    signed = SignedRecord.from_dict(stored["record"])
    signed.verify(ex.app.state.log_key.public_key())
    assert signed.record.actor == ex.app.state.log_key.key_id()
    payload = stored["record"]["record"]["payload"]
    assert payload["number"] == number and payload["rights"] == cert["rights"]
    before = SignedRecord.from_dict(ex.entry(issued["index"] - 1)["record"])
    assert before.record.type == "listing.published"
    listed = ex.http().get("/certificates", params={"listing": listing_id}).json()["items"]
    assert [c["number"] for c in listed] == [number]


def test_each_new_version_gets_a_certificate_carrying_the_rights(ex: Exchange) -> None:
    owner, partner, listing_id = two_provider_listing(ex)
    first = number_of(ex, listing_id)
    buyer = ex.register("buyer")
    act(
        ex,
        owner,
        first,
        "certificate.transfer_offered",
        right="operation",
        share_bps=2_000,
        to=buyer.key_id(),
    )
    act(ex, buyer, first, "certificate.transfer_accepted")
    act(ex, ex.operator, first, "certificate.transfer_approved", reason="agreement checked")
    version = {
        "listing_id": listing_id,
        "version": 2,
        "content_digest": "cd" * 32,
        "row_count": 10,
        "byte_size": 100,
        "format": "csv",
    }
    added = ex.act(
        owner, "POST", f"/listings/{listing_id}/versions", "listing.version_added", version
    )
    assert added.status_code == 201, added.text
    second = added.json()["listing"]["certificate"]
    assert second != first and second.endswith("000002")
    cert = certificate(ex, second)["certificate"]
    assert cert["version"] == 2 and cert["content_digest"] == "cd" * 32
    assert holders(cert, "operation") == {
        owner.key_id(): 5_000,
        partner.key_id(): 3_000,
        buyer.key_id(): 2_000,
    }
    assert holders(cert, "holding") == {owner.key_id(): 7_000, partner.key_id(): 3_000}
    listed = ex.http().get("/certificates", params={"listing": listing_id}).json()["items"]
    assert [c["number"] for c in listed] == [first, second]


def test_a_refused_publication_issues_no_certificate(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = ex.draft(owner)
    assert ex.step(owner, listing_id, "submit").status_code == 200
    before = database_state(ex)
    error(ex.step(ex.operator, listing_id, "publish"), 409, "invalid_state")  # not reviewed
    assert database_state(ex) == before
    assert before["certificate"] == []
    assert ex.step(ex.operator, listing_id, "review").status_code == 200
    # three operators publish at once: one wins, with one certificate; the others
    # are refused after their certificate was signed, and leave nothing of it
    barrier = threading.Barrier(3)
    answers: list[httpx.Response] = []

    def publish_once() -> None:
        barrier.wait()
        answers.append(ex.step(ex.operator, listing_id, "publish"))

    threads = [threading.Thread(target=publish_once) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in answers) == [200, 409, 409], [r.text for r in answers]
    [won] = [r for r in answers if r.status_code == 200]
    listed = ex.http().get("/certificates", params={"listing": listing_id}).json()["items"]
    assert [c["number"] for c in listed] == [won.json()["listing"]["certificate"]]
    assert listed[0]["number"].endswith("-000001")
    assert len(database_state(ex)["certificate_event"]) == 1  # its certificate.issued only


def test_concurrent_publications_take_gap_free_numbers(ex: Exchange) -> None:
    owner = ex.provider()
    ids = []
    for _ in range(6):
        listing_id = ex.draft(owner)
        assert ex.step(owner, listing_id, "submit").status_code == 200
        assert ex.step(ex.operator, listing_id, "review").status_code == 200
        ids.append(listing_id)
    barrier = threading.Barrier(len(ids))
    answers: dict[str, httpx.Response] = {}

    def publish_one(listing_id: str) -> None:
        barrier.wait()
        answers[listing_id] = ex.step(ex.operator, listing_id, "publish")

    threads = [threading.Thread(target=publish_one, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code == 200 for r in answers.values()), [r.text for r in answers.values()]
    numbers = sorted(r.json()["listing"]["certificate"] for r in answers.values())
    assert [int(n.rsplit("-", 1)[1]) for n in numbers] == list(range(1, 7))
    for listing_id, response in answers.items():
        index = response.json()["log"]["index"]
        issued = ex.entry(index + 1)["record"]["record"]
        assert issued["type"] == "certificate.issued"
        assert issued["payload"]["listing_id"] == listing_id


# --------------------------------------------------------------------------- lifecycle


def test_transfer_is_offered_accepted_and_approved(ex: Exchange) -> None:
    owner, partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    buyer = ex.register("buyer")
    offered = act(
        ex,
        partner,
        number,
        "certificate.transfer_offered",
        right="processing",
        share_bps=3_000,
        to=buyer.key_id(),
    )
    ex.assert_logged(offered, partner, "certificate.transfer_offered")
    assert offered.json()["certificate"]["state"] == "transfer_offered"
    accepted = act(ex, buyer, number, "certificate.transfer_accepted")
    ex.assert_logged(accepted, buyer, "certificate.transfer_accepted")
    approved = act(ex, ex.operator, number, "certificate.transfer_approved", reason="ok")
    ex.assert_logged(approved, ex.operator, "certificate.transfer_approved")
    cert = approved.json()["certificate"]
    assert cert["state"] == "active" and cert["pending"] is None
    assert holders(cert, "processing") == {owner.key_id(): 7_000, buyer.key_id(): 3_000}
    assert holders(cert, "holding") == {owner.key_id(): 7_000, partner.key_id(): 3_000}
    history = certificate(ex, number)["history"]
    assert [h["type"] for h in history] == [
        "certificate.issued",
        "certificate.transfer_offered",
        "certificate.transfer_accepted",
        "certificate.transfer_approved",
    ]
    assert [h["index"] for h in history[1:]] == [
        r.json()["log"]["index"] for r in (offered, accepted, approved)
    ]


def test_change_renewal_and_rejections(ex: Exchange) -> None:
    owner, partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    cert = certificate(ex, number)["certificate"]
    scope = {"category": "transport", "purposes": ["research"], "text": "Research only."}
    act(ex, partner, number, "certificate.change_requested", scope=scope, reason="narrower")
    rejected = act(
        ex,
        ex.operator,
        number,
        "certificate.changed",
        decision="reject",
        reason="not agreed by the owner",
    )
    assert rejected.json()["certificate"]["scope"] == cert["scope"]
    rights = {
        right: [
            {"participant": owner.key_id(), "share_bps": 5_000},
            {"participant": partner.key_id(), "share_bps": 5_000},
        ]
        for right in ("holding", "processing", "operation")
    }
    act(
        ex,
        owner,
        number,
        "certificate.change_requested",
        scope=scope,
        rights=rights,
        reason="new agreement",
    )
    changed = act(ex, ex.operator, number, "certificate.changed", decision="approve", reason="ok")
    after = changed.json()["certificate"]
    assert after["scope"] == scope and holders(after, "holding") == {
        owner.key_id(): 5_000,
        partner.key_id(): 5_000,
    }
    until = cert["valid_until"] + YEAR_MS
    act(ex, owner, number, "certificate.renewal_requested", valid_until=until)
    renewed = act(
        ex,
        ex.operator,
        number,
        "certificate.renewed",
        decision="approve",
        valid_until=until,
        reason="granted",
    )
    assert renewed.json()["certificate"]["valid_until"] == until
    assert renewed.json()["certificate"]["state"] == "active"


def test_cancellation_stops_quotes_orders_and_new_versions(ex: Exchange) -> None:
    owner, _partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    buyer = ex.register("buyer")
    assert deposit(ex, buyer, 100_000).status_code == 201
    early = quote(ex, buyer, listing_id)  # quoted before the cancellation
    act(ex, owner, number, "certificate.cancellation_requested", reason="product retired")
    act(ex, ex.operator, number, "certificate.cancelled", decision="reject", reason="orders open")
    act(ex, owner, number, "certificate.cancellation_requested", reason="product retired")
    cancelled = act(
        ex, ex.operator, number, "certificate.cancelled", decision="approve", reason="注销"
    )
    assert cancelled.json()["certificate"]["state"] == "cancelled"
    response = ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={"terms": {}})
    error(response, 409, "certificate_cancelled")
    before = database_state(ex)
    error(place(ex, buyer, order_body(buyer, early)), 409, "certificate_cancelled")
    version = {
        "listing_id": listing_id,
        "version": 2,
        "content_digest": "cd" * 32,
        "row_count": 1,
        "byte_size": 1,
        "format": "csv",
    }
    added = ex.act(
        owner, "POST", f"/listings/{listing_id}/versions", "listing.version_added", version
    )
    error(added, 409, "certificate_cancelled")
    # a cancelled certificate is final
    act(
        ex,
        owner,
        number,
        "certificate.renewal_requested",
        409,
        valid_until=cancelled.json()["certificate"]["valid_until"] + 1,
    )
    act(ex, ex.operator, number, "certificate.cancelled", 409, decision="approve", reason="again")
    assert database_state(ex) == before


def test_an_operator_cancels_outright(ex: Exchange) -> None:
    _owner, _partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    act(ex, ex.operator, number, "certificate.cancelled", 409, decision="reject", reason="x")
    done = act(
        ex,
        ex.operator,
        number,
        "certificate.cancelled",
        decision="approve",
        reason="source licence revoked",
    )
    assert done.json()["certificate"]["state"] == "cancelled"


def test_an_expired_certificate_stops_orders_until_renewed(ex: Exchange) -> None:
    owner, _partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    cert = certificate(ex, number)["certificate"]
    buyer = ex.register("buyer")
    act(
        ex,
        owner,
        number,
        "certificate.change_requested",
        valid_until=cert["valid_from"] + 1,
        reason="shorten",
    )
    act(ex, ex.operator, number, "certificate.changed", decision="approve", reason="ok")
    assert certificate(ex, number)["certificate"]["expired"] is True
    response = ex.http(buyer).post(f"/listings/{listing_id}/quotes", json={"terms": {}})
    error(response, 409, "certificate_expired")
    until = cert["valid_until"]
    act(ex, owner, number, "certificate.renewal_requested", valid_until=until)
    act(
        ex,
        ex.operator,
        number,
        "certificate.renewed",
        decision="approve",
        valid_until=until,
        reason="renewed",
    )
    assert certificate(ex, number)["certificate"]["expired"] is False
    quote(ex, buyer, listing_id)


# --------------------------------------------------------------------------- refusals


def test_refusals_write_nothing(ex: Exchange) -> None:
    owner, partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    buyer, stranger = ex.register("buyer"), ex.register("buyer")
    auditor = ex.register("auditor")
    scope = {"category": "transport", "purposes": ["research"], "text": "t"}
    before = database_state(ex)

    def refused(key: SM2PrivateKey, record_type: str, status: int, code: str, **kw: Any) -> str:
        response = ex.act(
            key, "POST", f"/certificates/{number}/records", record_type, {"number": number, **kw}
        )
        message = error(response, status, code)
        assert database_state(ex) == before, (record_type, code)
        return message

    # wrong signer
    refused(stranger, "certificate.change_requested", 403, "not_holder", scope=scope, reason="x")
    refused(
        stranger,
        "certificate.transfer_offered",
        403,
        "not_right_holder",
        right="holding",
        share_bps=1,
        to=stranger.key_id(),
    )
    refused(owner, "certificate.cancelled", 403, "operator_only", decision="approve", reason="x")
    refused(ex.operator, "certificate.renewal_requested", 403, "not_holder", valid_until=2**52)
    response = ex.act(
        auditor,
        "POST",
        f"/certificates/{number}/records",
        "certificate.change_requested",
        {"number": number, "reason": "x", "scope": scope},
    )
    error(response, 403, "role_forbidden")
    response = ex.act(
        owner,
        "POST",
        f"/certificates/{number}/records",
        "certificate.change_requested",
        {"number": number, "reason": "x", "scope": scope},
        signer=partner,
    )
    error(response, 403, "actor_mismatch")
    # wrong state
    refused(buyer, "certificate.transfer_accepted", 409, "invalid_certificate_state")
    refused(
        ex.operator,
        "certificate.renewed",
        409,
        "invalid_certificate_state",
        decision="approve",
        valid_until=2**52,
        reason="x",
    )
    refused(
        ex.operator, "certificate.transfer_approved", 409, "invalid_certificate_state", reason="x"
    )
    # receivers and shares
    unknown = SM2PrivateKey.generate().key_id()
    refused(
        owner,
        "certificate.transfer_offered",
        422,
        "unknown_participant",
        right="operation",
        share_bps=100,
        to=unknown,
    )
    refused(
        owner,
        "certificate.transfer_offered",
        422,
        "unknown_participant",
        right="operation",
        share_bps=100,
        to=auditor.key_id(),
    )
    refused(
        owner,
        "certificate.transfer_offered",
        422,
        "invalid_transfer",
        right="operation",
        share_bps=100,
        to=owner.key_id(),
    )
    refused(
        partner,
        "certificate.transfer_offered",
        422,
        "invalid_shares",
        right="operation",
        share_bps=3_001,
        to=buyer.key_id(),
    )
    uneven = {
        right: [
            {"participant": owner.key_id(), "share_bps": 6_000},
            {"participant": partner.key_id(), "share_bps": 3_000},
        ]
        for right in ("holding", "processing", "operation")
    }
    refused(owner, "certificate.change_requested", 422, "invalid_shares", rights=uneven, reason="x")
    newcomer = {
        right: [
            {"participant": owner.key_id(), "share_bps": 7_000},
            {"participant": buyer.key_id(), "share_bps": 3_000},
        ]
        for right in ("holding", "processing", "operation")
    }
    refused(
        owner, "certificate.change_requested", 422, "invalid_shares", rights=newcomer, reason="x"
    )
    refused(
        owner, "certificate.change_requested", 422, "invalid_validity", valid_until=1, reason="x"
    )
    refused(owner, "certificate.renewal_requested", 422, "invalid_validity", valid_until=1)
    refused(owner, "certificate.change_requested", 422, "invalid_payload", reason="nothing")
    refused(owner, "certificate.renewal_requested", 422, "invalid_payload", valid_until="soon")
    # records that are not lifecycle records, or for another certificate
    refused(owner, "certificate.issued", 422, "wrong_record_type")
    refused(owner, "listing.published", 422, "wrong_record_type")
    response = ex.act(
        owner,
        "POST",
        f"/certificates/{number}/records",
        "certificate.renewal_requested",
        {"number": "SC-2020-000009", "valid_until": 2**52},
    )
    error(response, 422, "target_mismatch")
    assert database_state(ex) == before


def test_only_the_receiver_accepts_and_the_offer_blocks_other_requests(ex: Exchange) -> None:
    owner, partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    buyer, other = ex.register("buyer"), ex.register("buyer")
    act(
        ex,
        owner,
        number,
        "certificate.transfer_offered",
        right="holding",
        share_bps=7_000,
        to=buyer.key_id(),
    )
    before = database_state(ex)
    error(act(ex, other, number, "certificate.transfer_accepted", 403), 403, "not_receiver")
    error(
        act(ex, partner, number, "certificate.renewal_requested", 409, valid_until=2**52),
        409,
        "invalid_certificate_state",
    )
    assert database_state(ex) == before
    act(ex, ex.operator, number, "certificate.transfer_rejected", reason="no agreement")
    cert = certificate(ex, number)["certificate"]
    assert cert["state"] == "active"
    assert holders(cert, "holding") == {owner.key_id(): 7_000, partner.key_id(): 3_000}


def test_reads(ex: Exchange) -> None:
    error(ex.http().get("/certificates/SC-2026-999999"), 404, "certificate_not_found")
    error(ex.http().get("/certificates/not-a-number"), 422, "invalid_request")
    error(ex.http().get("/certificates", params={"listing": "x"}), 422, "invalid_request")
    error(ex.http().get("/certificates"), 422, "invalid_request")
    empty = ex.http().get(
        "/certificates", params={"listing": "0" * 8 + "-0000-0000-0000-" + "0" * 12}
    )
    assert empty.json() == {"items": []}


def test_a_replayed_request_is_refused_once_the_state_allows_it_again(ex: Exchange) -> None:
    owner, _partner, listing_id = two_provider_listing(ex)
    number = number_of(ex, listing_id)
    payload = {"number": number, "valid_until": 2**52, "reason": "longer"}
    body = ex.signed_body(owner, "certificate.change_requested", payload)
    path = f"/certificates/{number}/records"
    assert ex.http(owner).post(path, json=body).status_code == 200
    act(ex, ex.operator, number, "certificate.changed", decision="reject", reason="no")
    before = database_state(ex)
    error(ex.http(owner).post(path, json=body), 409, "duplicate_record")
    assert database_state(ex) == before
    assert certificate(ex, number)["certificate"]["state"] == "active"
