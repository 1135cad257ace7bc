"""``POST /orders/{id}/delivery`` and ``GET /orders/{id}/content`` over a real
uvicorn: the envelope opens with the buyer's key and the downloaded ciphertext
decrypts to the listing's digest; ``delivery.issued`` is logged by the exchange
and audits like any record; access is refused to others and after revocation,
expiry or refund; byte ranges resume a download. The delivery transition also
runs on PostgreSQL when ``TEST_POSTGRES_URL`` is set."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_auth_support import Exchange, error, running_exchange
from test_delivery_support import (
    dataset,
    listing_for,
    order_row,
    paid_order,
    publish_draft,
    ready_listing,
    set_order,
    sm3_hex,
    store_of,
    upload,
)
from test_orders import BACKENDS
from test_receipts import REGISTRY, FakeRegistry, _anchor

from exchange.anchoring.models import AnchorState
from exchange.log.sequencer import integrate_pending
from ledger import envelope
from ledger.audit import verify_bundle
from ledger.bundle import Bundle
from ledger.delivery import decrypt_file
from ledger.errors import DecryptionError
from ledger.records import SignedRecord
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

WINDOW_S = 3 * 24 * 3600
DAY_MS = 86_400_000


@pytest.fixture(params=BACKENDS)
def ex_any(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, acceptance_window_s=WINDOW_S
    ) as exchange:
        yield exchange


@pytest.fixture
def ex(live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path) as exchange:
        yield exchange


def deliver(ex: Exchange, buyer: SM2PrivateKey, order_id: str, **kw: Any) -> httpx.Response:
    return ex.http(buyer).post(f"/orders/{order_id}/delivery", **({"json": {}} | kw))


def download(ex: Exchange, buyer: SM2PrivateKey, order_id: str, **headers: str) -> httpx.Response:
    return ex.http(buyer).get(f"/orders/{order_id}/content", headers=headers)


def test_delivery_envelope_download_and_decryption(ex_any: Exchange, tmp_path: Path) -> None:
    ex = ex_any
    owner, buyer = ex.provider(), ex.register("buyer")
    data = dataset()
    listing_id = ready_listing(ex, owner, data)
    order_id = paid_order(ex, buyer, listing_id)
    assert order_row(ex, order_id).state == "placed"
    error(download(ex, buyer, order_id), 409, "not_delivered")  # no envelope yet

    response = deliver(ex, buyer, order_id)
    assert response.status_code == 200, response.text
    body = response.json()
    stored = store_of(ex).get(listing_id, 1)
    assert {k: body[k] for k in body if k not in ("envelope", "log")} == {
        "order_id": order_id,
        "listing_id": listing_id,
        "version": 1,
        "content_digest": sm3_hex(data),
        "size": len(data),
        "ciphertext_size": stored.ciphertext_size,
        "download_path": f"/orders/{order_id}/content",
    }

    # placed -> delivered, the acceptance window opens
    row = order_row(ex, order_id)
    assert row.state == "delivered" and row.delivered_at is not None
    assert row.acceptance_deadline == row.delivered_at + WINDOW_S * 1000

    # the envelope opens with the buyer's key (and nobody else's)
    wrapped = base64.b64decode(body["envelope"])
    key = envelope.unwrap_key(buyer, wrapped)
    with pytest.raises(DecryptionError):
        envelope.unwrap_key(SM2PrivateKey.generate(), wrapped)

    # the ciphertext, decrypted, is the listing's content
    got = download(ex, buyer, order_id)
    assert got.status_code == 200, got.text
    assert got.headers["accept-ranges"] == "bytes"
    assert int(got.headers["content-length"]) == len(got.content) == stored.ciphertext_size
    assert got.headers["content-type"] == "application/octet-stream"
    cipher = tmp_path / "download.sm4s"
    cipher.write_bytes(got.content)
    out = tmp_path / "plain.bin"
    digest = decrypt_file(
        key, cipher, out, listing_id=listing_id, version=1, expected_sm3_hex=body["content_digest"]
    )
    assert digest == sm3_hex(data) and out.read_bytes() == data

    # delivery.issued is in the log, signed by the exchange's log key
    log_key = ex.app.state.log_key
    stored_entry = ex.entry(body["log"]["index"])
    signed = SignedRecord.from_dict(stored_entry["record"])
    assert signed.record.type == "delivery.issued"
    assert signed.record.actor == log_key.key_id()
    signed.verify(log_key.public_key())
    assert signed.record.to_dict()["payload"] == {
        "order_id": order_id,
        "buyer": buyer.key_id(),
        "listing_id": listing_id,
        "version": 1,
        "content_digest": sm3_hex(data),
        "envelope_sm3": sm3(wrapped).hex(),
    }

    # asking again: a fresh envelope and record; the order does not change
    again = deliver(ex, buyer, order_id, content=b"")  # an empty body is fine too
    assert again.status_code == 200, again.text
    assert again.json()["log"]["index"] > body["log"]["index"]
    assert again.json()["envelope"] != body["envelope"]
    assert envelope.unwrap_key(buyer, base64.b64decode(again.json()["envelope"])) == key
    later = order_row(ex, order_id)
    assert (later.state, later.delivered_at, later.acceptance_deadline) == (
        "delivered",
        row.delivered_at,
        row.acceptance_deadline,
    )


def test_delivery_issued_receipt_audits_with_the_log_key_as_actor(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    order_id = paid_order(ex, buyer, ready_listing(ex, owner, dataset(10_000)))
    index = deliver(ex, buyer, order_id).json()["log"]["index"]
    [*_, checkpoint] = integrate_pending(ex.app.state.session_factory, ex.app.state.log_key)
    registry = FakeRegistry(31337, REGISTRY)
    registry.roots[checkpoint.tree_size] = _anchor(ex.app, checkpoint.tree_size, AnchorState.FINAL)

    response = ex.http().get(f"/receipts/{index}")
    assert response.status_code == 200, response.text
    bundle = Bundle.from_dict(response.json())
    log_key = ex.app.state.log_key.public_key()
    assert bundle.record.record.type == "delivery.issued"
    assert bundle.actor_public_key.key_id() == log_key.key_id() == bundle.record.record.actor
    verify_bundle(bundle, anchors=registry, trusted_log_key=log_key)


def test_delivery_is_for_the_buyer_with_access_only(ex: Exchange) -> None:
    owner, buyer, other = ex.provider(), ex.register("buyer"), ex.register("buyer")
    data = dataset(20_000)
    listing_id = listing_for(ex, owner, data)
    publish_draft(ex, owner, listing_id)
    order_id = paid_order(ex, buyer, listing_id)
    before = ex.log_size()

    # nothing uploaded yet: nothing issued, the order stays placed
    error(deliver(ex, buyer, order_id), 409, "content_not_available")
    assert order_row(ex, order_id).state == "placed" and ex.log_size() == before
    assert upload(ex, owner, listing_id, data).status_code == 201

    # not yours: as if it did not exist; providers and operators are not buyers
    error(deliver(ex, other, order_id), 404, "order_not_found")
    error(deliver(ex, other, "00000000-0000-4000-8000-000000000000"), 404, "order_not_found")
    error(deliver(ex, owner, order_id), 403, "role_forbidden")
    error(deliver(ex, ex.operator, order_id), 403, "role_forbidden")
    error(ex.http().post(f"/orders/{order_id}/delivery", json={}), 401, "unauthenticated")
    error(deliver(ex, buyer, order_id, json={"please": 1}), 422, "invalid_request")
    assert ex.log_size() == before

    assert deliver(ex, buyer, order_id).status_code == 200
    error(download(ex, other, order_id), 404, "order_not_found")
    error(download(ex, owner, order_id), 403, "role_forbidden")
    before = ex.log_size()

    # revoked (set directly: the revoke endpoint belongs to the order lifecycle)
    set_order(ex, order_id, revoked_at=1, revocation_reason="licence breach")
    error(deliver(ex, buyer, order_id), 403, "access_revoked")
    error(download(ex, buyer, order_id), 403, "access_revoked")
    set_order(ex, order_id, revoked_at=None, revocation_reason=None)

    # refunded
    set_order(ex, order_id, state="refunded")
    error(deliver(ex, buyer, order_id), 409, "order_closed")
    error(download(ex, buyer, order_id), 409, "order_closed")
    set_order(ex, order_id, state="delivered")
    assert download(ex, buyer, order_id).status_code == 200
    assert ex.log_size() == before


def test_an_expired_subscription_gets_nothing(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    pricing = {
        "model": "subscription",
        "price_per_period": 3_000,
        "period_days": 30,
        "max_periods": 12,
    }
    listing_id = ready_listing(ex, owner, dataset(10_000), pricing=pricing)
    order_id = paid_order(ex, buyer, listing_id, periods=1)
    row = order_row(ex, order_id)
    assert row.access_expires_at is not None and row.access_expires_at > row.created_at
    assert deliver(ex, buyer, order_id).status_code == 200
    assert download(ex, buyer, order_id).status_code == 200
    before = ex.log_size()

    set_order(ex, order_id, access_expires_at=row.created_at - DAY_MS)
    error(deliver(ex, buyer, order_id), 403, "access_expired")
    error(download(ex, buyer, order_id), 403, "access_expired")
    assert ex.log_size() == before


def test_ranges_resume_a_download(ex: Exchange) -> None:
    owner, buyer = ex.provider(), ex.register("buyer")
    order_id = paid_order(ex, buyer, ready_listing(ex, owner, dataset(150_000)))
    assert deliver(ex, buyer, order_id).status_code == 200
    full = download(ex, buyer, order_id)
    whole, etag = full.content, full.headers["etag"]
    size = len(whole)
    assert etag.startswith('"') and etag.endswith('"')

    def ranged(value: str, **extra: str) -> httpx.Response:
        return download(ex, buyer, order_id, Range=value, **extra)

    cases = {
        "bytes=0-99": (0, 100),  # first bytes
        "bytes=70000-70999": (70_000, 71_000),  # middle, across a chunk boundary
        "bytes=-500": (size - 500, size),  # suffix
        f"bytes=100-{size + 1000}": (100, size),  # clipped to the end
    }
    for value, (start, end) in cases.items():
        response = ranged(value)
        assert response.status_code == 206, (value, response.text)
        assert response.content == whole[start:end]
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert int(response.headers["content-length"]) == end - start
        assert response.headers["etag"] == etag

    # resume: part of the download, then the rest with Range
    with ex.http(buyer).stream("GET", f"/orders/{order_id}/content") as stream:
        part = b""
        for chunk in stream.iter_bytes():
            part += chunk
            if len(part) >= 40_000:
                break
    rest = ranged(f"bytes={len(part)}-", **{"If-Range": etag})
    assert rest.status_code == 206
    assert part + rest.content == whole

    # not satisfiable
    for value in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        response = ranged(value)
        error(response, 416, "range_not_satisfiable")
        assert response.headers["content-range"] == f"bytes */{size}"
    # ignored (RFC 9110): malformed or multiple ranges, a stale If-Range -> the whole body
    for response in (
        ranged("bytes=5-1"),
        ranged("bytes=0-1,5-9"),
        ranged("lines=1-2"),
        ranged("bytes=0-99", **{"If-Range": '"another"'}),
    ):
        assert response.status_code == 200 and response.content == whole

    # HEAD: the headers alone
    head = ex.http(buyer).head(f"/orders/{order_id}/content", headers={"Range": "bytes=10-19"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-range"] == f"bytes 10-19/{size}"
    assert head.headers["content-length"] == "10" and head.headers["etag"] == etag
