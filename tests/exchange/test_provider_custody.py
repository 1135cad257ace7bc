"""Provider custody over real HTTP: listings, quotes with row_offset, the deliverable
upload, the provider-signed delivery.issued, the buyer's delivery record and
download, and every refusal leaving nothing behind (SQLite; also PostgreSQL
when ``TEST_POSTGRES_URL`` is set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_auth_support import Exchange, error, running_exchange
from test_custody_support import (
    DIGEST,
    ROW_COUNT,
    ROW_ROOT,
    TIERS,
    confirm,
    deliver,
    delivery_payload,
    provider_listing,
    put_deliverable,
    quantity_order,
    whole_order,
)
from test_delivery_support import paid_order, ready_listing, sm3_hex, upload
from test_orders import BACKENDS
from test_refusals import database_state

from ledger.records import SignedRecord
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, auto_accept_interval_s=3600
    ) as exchange:
        yield exchange


def deliverable_files(ex: Exchange) -> list[str]:
    root = Path(ex.app.state.settings.data_dir)
    return sorted(str(p.relative_to(root)) for p in root.rglob("deliverables/orders/*/*"))


def test_listing_shows_its_custody_and_refuses_what_custody_forbids(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = provider_listing(ex, owner, delivery_window_s=600)
    listing = ex.http().get(f"/listings/{listing_id}").json()
    assert (listing["custody"], listing["delivery_window_s"], listing["row_root"]) == (
        "provider",
        600,
        ROW_ROOT,
    )
    [version] = ex.http().get(f"/listings/{listing_id}/versions").json()
    assert version["row_root"] == ROW_ROOT
    error(upload(ex, owner, listing_id, b"rows\n"), 409, "provider_custody")

    before = ex.log_size()
    http = ex.http(owner)
    for overrides in (
        {"custody": "provider", "row_root": None},
        {"custody": "exchange", "pricing": TIERS},
        {"delivery_window_s": 59},
        {"delivery_window_s": 30 * 86_400 + 1},
        {"custody": "elsewhere"},
        {"row_root": "AB" * 32},
    ):
        payload = {"listing_id": "0f0e0d0c-0b0a-4908-8706-050403020100", "title": "t"}
        content = ex.signed_body(
            owner,
            "listing.drafted",
            payload | _content(owner, overrides),
        )
        error(http.post("/listings", json=content), 422, "invalid_payload")
    assert ex.log_size() == before


def _content(owner: SM2PrivateKey, overrides: dict[str, Any]) -> dict[str, Any]:
    from test_auth_support import listing_content

    content = listing_content(owner.key_id(), custody="provider", row_root=ROW_ROOT)
    content.update(overrides)
    del content["title"]
    return content


def test_quantity_order_names_its_rows_and_is_delivered_by_the_provider(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id, order_id = quantity_order(ex, owner, buyer, rows=100, offset=50)
    order = ex.http(buyer).get(f"/orders/{order_id}").json()
    assert (order["rows"], order["row_offset"], order["custody"]) == (100, 50, "provider")
    assert order["terms"]["row_offset"] == 50
    assert order["delivery_deadline"] == order["created_at"] + 86_400_000
    error(ex.http(buyer).get(f"/orders/{order_id}/delivery"), 409, "not_delivered")
    error(ex.http(buyer).get(f"/orders/{order_id}/content"), 409, "not_delivered")

    first = os.urandom(4000)
    response = put_deliverable(ex, owner, order_id, first)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "order_id": order_id,
        "ciphertext_sm3": sm3_hex(first),
        "ciphertext_size": len(first),
    }
    data = os.urandom(6000)  # a re-upload replaces it
    assert put_deliverable(ex, owner, order_id, data).status_code == 200
    payload = delivery_payload(ex, order_id, data)
    response = confirm(ex, owner, order_id, payload)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["order"]["state"] == "delivered"
    assert body["order"]["delivery_deadline"] is None
    assert body["order"]["acceptance_deadline"] is not None
    ex.assert_logged(response, owner, "delivery.issued")
    assert len(deliverable_files(ex)) == 1  # the first upload is gone

    delivery = ex.http(buyer).get(f"/orders/{order_id}/delivery").json()
    assert delivery["custody"] == "provider"
    assert delivery["log_index"] == body["log"]["index"]
    assert delivery["download_path"] == f"/orders/{order_id}/content"
    signed = SignedRecord.from_dict(delivery["record"])
    signed.verify(owner.public_key())
    assert delivery["record"]["record"]["payload"] == payload

    download = ex.http(buyer).get(f"/orders/{order_id}/content")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["etag"] == f'"{sm3_hex(data)}"'
    part = ex.http(buyer).get(
        f"/orders/{order_id}/content",
        headers={"Range": "bytes=100-", "If-Range": download.headers["etag"]},
    )
    assert part.status_code == 206
    assert part.content == data[100:]

    error(ex.http(buyer).post(f"/orders/{order_id}/delivery", json={}), 409, "provider_custody")
    error(put_deliverable(ex, owner, order_id), 409, "already_delivered")
    again = delivery_payload(ex, order_id, data, plaintext_size=1)
    error(confirm(ex, owner, order_id, again), 409, "already_delivered")
    stranger = ex.register("buyer")
    error(ex.http(stranger).get(f"/orders/{order_id}/delivery"), 404, "order_not_found")
    error(ex.http(stranger).get(f"/orders/{order_id}/content"), 404, "order_not_found")
    assert listing_id


def test_whole_dataset_order_and_exchange_custody_delivery_record(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    _, order_id = whole_order(ex, owner, buyer)
    order = ex.http(buyer).get(f"/orders/{order_id}").json()
    assert (order["rows"], order["row_offset"]) == (None, None)
    deliver(ex, owner, order_id)
    assert ex.http(buyer).get(f"/orders/{order_id}").json()["state"] == "delivered"

    data = os.urandom(1000)
    listing_id = ready_listing(ex, owner, data)
    exchange_order = paid_order(ex, buyer, listing_id)
    assert ex.http(buyer).get(f"/orders/{exchange_order}").json()["custody"] == "exchange"
    error(put_deliverable(ex, owner, exchange_order), 409, "exchange_custody")
    issued = ex.http(buyer).post(f"/orders/{exchange_order}/delivery", json={})
    assert issued.status_code == 200, issued.text
    reissued = ex.http(buyer).post(f"/orders/{exchange_order}/delivery", json={})
    delivery = ex.http(buyer).get(f"/orders/{exchange_order}/delivery").json()
    assert delivery["custody"] == "exchange"
    assert delivery["log_index"] == reissued.json()["log"]["index"]
    assert delivery["record"]["record"]["actor"] == ex.app.state.log_key.key_id()


def test_quote_rows_must_exist(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    listing_id = provider_listing(ex, owner, pricing=TIERS)
    http = ex.http(buyer)
    path = f"/listings/{listing_id}/quotes"
    assert http.post(path, json={"terms": {"rows": 10}}).json()["quote"]["terms"]["row_offset"] == 0
    last = {"rows": 10, "row_offset": ROW_COUNT - 10}
    assert http.post(path, json={"terms": last}).status_code == 201
    past = {"rows": 10, "row_offset": ROW_COUNT - 9}
    error(http.post(path, json={"terms": past}), 422, "invalid_terms")
    error(http.post(path, json={"terms": {"row_offset": 1}}), 422, "invalid_terms")
    error(http.post(path, json={"terms": {"rows": 1, "row_offset": -1}}), 422, "invalid_request")
    fixed = provider_listing(ex, owner)
    bad = {"terms": {"row_offset": 0}}
    error(http.post(f"/listings/{fixed}/quotes", json=bad), 422, "invalid_terms")


def _forgeries(
    ex: Exchange, owner: SM2PrivateKey, buyer: SM2PrivateKey, co_owner: SM2PrivateKey
) -> Iterator[tuple[str, int, str, Any]]:
    """(what, status, code, send) for every refused delivery of a quantity order."""
    _, order_id = quantity_order(ex, owner, buyer)
    _, other_order = quantity_order(ex, owner, buyer)
    _, whole = whole_order(ex, owner, buyer)
    data = os.urandom(2000)
    assert put_deliverable(ex, owner, order_id, data).status_code == 200
    good = delivery_payload(ex, order_id, data)
    outsider = ex.provider("outsider")

    def send(payload: dict[str, Any], key: SM2PrivateKey = owner, **kw: Any) -> Any:
        return lambda: confirm(ex, key, order_id, payload, **kw)

    yield "signed by a provider of another listing", 403, "not_a_provider", send(good, outsider)
    yield (
        "a provider's request carrying the buyer's record",
        403,
        "actor_mismatch",
        send(good, owner, signer=buyer),
    )
    yield "sent by the buyer", 403, "role_forbidden", send(good, buyer, signer=buyer)
    yield (
        "the payload of another order",
        422,
        "invalid_payload",
        send(good | {"order_id": other_order}),
    )
    yield (
        "another listing",
        422,
        "delivery_mismatch",
        send(good | {"listing_id": "0f0e0d0c-0b0a-4908-8706-050403020100"}),
    )
    yield "another buyer", 422, "delivery_mismatch", send(good | {"buyer": owner.key_id()})
    yield "another version", 422, "delivery_mismatch", send(good | {"version": 2})
    yield (
        "rows from another offset",
        422,
        "delivery_mismatch",
        send(good | {"rows": {"offset": 51, "count": 100}}),
    )
    yield (
        "one row fewer",
        422,
        "delivery_mismatch",
        send(good | {"rows": {"offset": 50, "count": 99}}),
    )
    yield (
        "another row root",
        422,
        "delivery_mismatch",
        send(good | {"range_proof": {**good["range_proof"], "row_root": "ef" * 32}}),
    )
    yield (
        "another tree size",
        422,
        "delivery_mismatch",
        send(good | {"range_proof": {**good["range_proof"], "tree_size": ROW_COUNT + 1}}),
    )
    yield (
        "no rows for a quantity order",
        422,
        "delivery_mismatch",
        send(good | {"rows": None, "range_proof": None}),
    )
    yield (
        "the wrong ciphertext SM3",
        422,
        "delivery_mismatch",
        send(good | {"ciphertext_sm3": "0f" * 32}),
    )
    yield (
        "the wrong ciphertext size",
        422,
        "delivery_mismatch",
        send(good | {"ciphertext_size": len(data) + 1}),
    )
    yield "a malformed payload", 422, "invalid_payload", send(good | {"wrapped_key": "%%"})
    yield "an unknown field", 422, "invalid_payload", send(good | {"note": "x"})
    yield (
        "nothing uploaded",
        409,
        "deliverable_missing",
        lambda: confirm(ex, owner, other_order, delivery_payload(ex, other_order, data)),
    )
    whole_payload = delivery_payload(ex, whole, data, plaintext_sm3="34" * 32)
    put_deliverable(ex, owner, whole, data)
    yield (
        "a whole dataset with another digest",
        422,
        "delivery_mismatch",
        lambda: confirm(ex, owner, whole, whole_payload),
    )
    yield (
        "no such order",
        404,
        "order_not_found",
        lambda: confirm(
            ex,
            owner,
            "0f0e0d0c-0b0a-4908-8706-050403020100",
            good | {"order_id": "0f0e0d0c-0b0a-4908-8706-050403020100"},
        ),
    )
    yield (
        "an upload by a provider of another listing",
        404,
        "order_not_found",
        lambda: put_deliverable(ex, outsider, order_id),
    )
    yield (
        "an upload by the co-provider's stranger",
        404,
        "order_not_found",
        lambda: put_deliverable(ex, co_owner, "0f0e0d0c-0b0a-4908-8706-050403020100"),
    )
    yield (
        "an upload with a body that is not its digest",
        401,
        "digest_mismatch",
        lambda: ex.http(owner).put(
            f"/orders/{order_id}/deliverable",
            content=b"abc",
            headers={"Content-Digest": "sm3=:" + "A" * 43 + "=:"},
        ),
    )


def test_every_forged_or_mismatched_delivery_is_refused_and_writes_nothing(
    ex: Exchange,
) -> None:
    owner, buyer, co_owner = ex.provider(), ex.register("buyer"), ex.provider("co")
    for what, status, code, send in list(_forgeries(ex, owner, buyer, co_owner)):
        before, files, size = database_state(ex), deliverable_files(ex), ex.log_size()
        error(send(), status, code)
        assert database_state(ex) == before, what
        assert deliverable_files(ex) == files, what
        assert ex.log_size() == size, what


def test_the_same_record_twice_is_one_delivery(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    _, order_id = whole_order(ex, owner, buyer)
    data = os.urandom(2000)
    put_deliverable(ex, owner, order_id, data)
    body = ex.signed_body(owner, "delivery.issued", delivery_payload(ex, order_id, data))
    http = ex.http(owner)
    assert http.post(f"/orders/{order_id}/deliverable", json=body).status_code == 201
    before = database_state(ex)
    response = http.post(f"/orders/{order_id}/deliverable", json=body)
    assert response.json()["code"] in ("duplicate_record", "already_delivered")
    assert response.status_code == 409
    assert database_state(ex) == before


def test_a_co_provider_delivers_and_digest_is_the_listings(ex: Exchange) -> None:
    owner, co, buyer = ex.provider(), ex.provider("co"), ex.register("buyer")
    providers = [
        {"key_id": owner.key_id(), "share_bps": 7000},
        {"key_id": co.key_id(), "share_bps": 3000},
    ]
    listing_id = provider_listing(ex, owner, providers=providers)
    order_id = paid_order(ex, buyer, listing_id)
    data = os.urandom(1500)
    assert put_deliverable(ex, co, order_id, data).status_code == 200
    payload = delivery_payload(ex, order_id, data)
    assert payload["plaintext_sm3"] == DIGEST
    response = confirm(ex, co, order_id, payload)
    assert response.status_code == 201, response.text


def test_a_dispute_carries_the_buyers_evidence(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    _, order_id = quantity_order(ex, owner, buyer)
    deliver(ex, owner, order_id)
    path = f"/orders/{order_id}/dispute"
    too_big = {"check": "range_proof", "actual": "x" * 16_400}
    before = database_state(ex)
    payload = {"order_id": order_id, "reason": "wrong rows", "evidence": too_big}
    error(ex.act(buyer, "POST", path, "order.disputed", payload), 422, "invalid_payload")
    payload["evidence"] = ["not", "an", "object"]
    error(ex.act(buyer, "POST", path, "order.disputed", payload), 422, "invalid_payload")
    assert database_state(ex) == before
    evidence = {"check": "range_proof", "expected": ROW_ROOT, "actual": "ef" * 32}
    payload["evidence"] = evidence
    response = ex.act(buyer, "POST", path, "order.disputed", payload)
    assert response.status_code == 200, response.text
    assert response.json()["order"]["state"] == "disputed"
    logged = ex.entry(response.json()["log"]["index"])["record"]["record"]["payload"]
    assert logged["evidence"] == evidence
