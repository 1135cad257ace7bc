"""``PUT /listings/{id}/versions/{v}/content`` over a real uvicorn: streamed,
signed uploads checked against their Content-Digest and the listing's digest,
with nothing kept on any refusal."""

from __future__ import annotations

import base64
import json
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Message, Scope
from test_auth_support import Exchange, error, running_exchange
from test_delivery_support import (
    content_path,
    dataset,
    listing_for,
    publish_draft,
    sha256_header,
    sm3_header,
    sm3_hex,
    store_of,
    temporary_entries,
    upload,
)
from test_memory_support import RssGrowth
from test_orders import BACKENDS

from clients.signing import SM2RequestSigner
from ledger.sm3 import SM3Hasher

MAX_BYTES = 300_000


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(
        live_server, tmp_path, request.param, content_max_bytes=MAX_BYTES
    ) as exchange:
        yield exchange


def test_upload_then_idempotent_retry(ex: Exchange) -> None:
    owner = ex.provider()
    data = dataset()
    listing_id = listing_for(ex, owner, data)  # a draft: content may come before review
    before = ex.log_size()

    response = upload(ex, owner, listing_id, data)
    assert response.status_code == 201, response.text
    expected = {"listing_id": listing_id, "version": 1, "sm3": sm3_hex(data), "size": len(data)}
    assert response.json() == expected
    store = store_of(ex)
    stored = store.get(listing_id, 1)
    assert (stored.sm3_hex, stored.plaintext_size) == (sm3_hex(data), len(data))
    assert temporary_entries(store) == []
    assert ex.log_size() == before  # the listing record already commits the digest

    # the same bytes again: 200, the stored content untouched
    again = upload(ex, owner, listing_id, data)
    assert again.status_code == 200, again.text
    assert again.json() == expected
    assert store.get(listing_id, 1) == stored
    # other bytes for a stored version are still checked against the listing
    error(upload(ex, owner, listing_id, dataset(1000)), 422, "content_digest_mismatch")
    assert store.get(listing_id, 1) == stored and temporary_entries(store) == []
    assert ex.log_size() == before

    # still allowed once published, refused once delisted
    publish_draft(ex, owner, listing_id)
    assert upload(ex, owner, listing_id, data).status_code == 200
    assert ex.step(owner, listing_id, "delist", reason="gone").status_code == 200
    error(upload(ex, owner, listing_id, data), 409, "listing_delisted")


def test_streamed_upload_with_sha256_digest_and_co_provider(ex: Exchange) -> None:
    owner, partner = ex.provider("owner"), ex.provider("partner")
    data = dataset()
    providers = [
        {"key_id": owner.key_id(), "share_bps": 6_000},
        {"key_id": partner.key_id(), "share_bps": 4_000},
    ]
    listing_id = listing_for(ex, owner, data, providers=providers)
    chunks = (data[i : i + 10_000] for i in range(0, len(data), 10_000))  # chunked, no length
    response = upload(ex, partner, listing_id, chunks, content_digest=sha256_header(data))
    assert response.status_code == 201, response.text
    assert store_of(ex).get(listing_id, 1).sm3_hex == sm3_hex(data)


def test_wrong_content_digest_keeps_nothing(ex: Exchange) -> None:
    owner = ex.provider()
    data = dataset()
    listing_id = listing_for(ex, owner, data)
    store = store_of(ex)
    tampered = bytearray(data)
    tampered[-1] ^= 1
    # The body is the listing's, but the signed Content-Digest is of other bytes.
    for header in (sm3_header(bytes(tampered)), sha256_header(bytes(tampered))):
        response = upload(ex, owner, listing_id, data, content_digest=header)
        error(response, 401, "digest_mismatch")
        assert not store.exists(listing_id, 1) and temporary_entries(store) == []
    # The same, streamed without a length.
    chunks = iter([data[:100_000], data[100_000:]])
    response = upload(ex, owner, listing_id, chunks, content_digest=sm3_header(bytes(tampered)))
    error(response, 401, "digest_mismatch")
    assert not store.exists(listing_id, 1) and temporary_entries(store) == []


def test_wrong_listing_digest_keeps_nothing(ex: Exchange) -> None:
    owner = ex.provider()
    data = dataset()
    listing_id = listing_for(ex, owner, data)
    store = store_of(ex)
    other = dataset()  # correctly signed, but not the bytes the listing commits to
    error(upload(ex, owner, listing_id, other), 422, "content_digest_mismatch")
    assert not store.exists(listing_id, 1) and temporary_entries(store) == []
    assert list((store.root / "objects").iterdir()) == []


def test_who_may_upload(ex: Exchange) -> None:
    owner, other = ex.provider("owner"), ex.provider("other")
    buyer = ex.register("buyer")
    data = dataset(5_000)
    draft = listing_for(ex, owner, data)
    published = listing_for(ex, owner, data)
    publish_draft(ex, owner, published)
    store = store_of(ex)

    error(upload(ex, other, published, data), 403, "not_a_provider")
    error(upload(ex, other, draft, data), 404, "listing_not_found")  # a draft it cannot see
    error(upload(ex, ex.operator, published, data), 403, "role_forbidden")
    error(upload(ex, buyer, published, data), 403, "role_forbidden")
    error(upload(ex, None, published, data), 401, "unauthenticated")
    error(upload(ex, owner, "00000000-0000-4000-8000-000000000000", data), 404, "listing_not_found")
    error(upload(ex, owner, published, data, version=2), 404, "version_not_found")
    error(upload(ex, owner, published, data, version=0), 422, "invalid_request")
    assert not store.exists(published, 1) and not store.exists(draft, 1)

    # a replayed signed request (same nonce) is refused before its body is read
    signer = SM2RequestSigner(owner, nonce=lambda: "the-same-nonce-0123456789")
    assert upload(ex, owner, published, data, signer=signer).status_code == 201
    error(upload(ex, owner, published, data, signer=signer), 401, "replayed_nonce")


def test_too_large_is_refused_and_keeps_nothing(ex: Exchange) -> None:
    owner = ex.provider()
    data = dataset(MAX_BYTES + 1)
    listing_id = listing_for(ex, owner, data)
    store = store_of(ex)
    # declared by Content-Length: refused before the body is read
    error(upload(ex, owner, listing_id, data), 413, "content_too_large")
    # streamed without a length: refused when the limit is crossed
    chunks = (data[i : i + 50_000] for i in range(0, len(data), 50_000))
    error(
        upload(ex, owner, listing_id, chunks, content_digest=sm3_header(data)),
        413,
        "content_too_large",
    )
    assert not store.exists(listing_id, 1) and temporary_entries(store) == []
    # the general body limit (1 MiB) does not apply to uploads: the exchange's own does
    assert ex.app.state.settings.max_request_bytes > MAX_BYTES


def test_the_event_loop_serves_others_while_an_upload_streams(ex: Exchange) -> None:
    owner = ex.provider()
    data = dataset()
    listing_id = listing_for(ex, owner, data)
    first_sent, release = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        yield data[:65_536]
        first_sent.set()
        assert release.wait(30)
        yield data[65_536:]

    results: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: results.append(
            upload(ex, owner, listing_id, slow(), content_digest=sm3_header(data))
        )
    )
    thread.start()
    try:
        assert first_sent.wait(30)
        # the upload is mid-body; other requests are answered meanwhile
        assert ex.http().get("/health").status_code == 200
        assert ex.http(owner).get(f"/listings/{listing_id}").status_code == 200
    finally:
        release.set()
        thread.join(60)
    assert results[0].status_code == 201, results[0].text


def test_a_client_that_disconnects_mid_body_leaves_nothing(ex: Exchange) -> None:
    """Straight through ASGI (a real client cannot be made to vanish on cue): the
    signed request sends 64 KiB of its body, then the connection drops."""
    owner = ex.provider()
    data = dataset()
    listing_id = listing_for(ex, owner, data)
    request = httpx.Request("PUT", ex.url + content_path(listing_id), content=data)
    SM2RequestSigner(owner).sign(request)
    path = content_path(listing_id)
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": data[:65_536], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []
    store = store_of(ex)
    seen_temporary: list[int] = []

    async def receive() -> Message:
        if len(incoming) == 1:  # the first chunk is being ingested by now
            seen_temporary.append(len(temporary_entries(store)))
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(ex.app, scope, receive, send)
    assert sent[0]["status"] == 400
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["code"] == "upload_incomplete"
    assert seen_temporary == [1]  # it had started writing
    assert not store.exists(listing_id, 1) and temporary_entries(store) == []


BIG = 64 * 1024 * 1024
BLOCK = 1024 * 1024


@pytest.mark.slow
def test_a_64_mib_upload_streams_in_bounded_memory(live_server: Any, tmp_path: Path) -> None:
    """The whole endpoint (uvicorn, auth, the digest check, ingest) holds a few
    chunks, not the body: 64 MiB generated on the fly, never held by the client."""
    base = dataset(BLOCK)

    def blocks() -> Iterator[bytes]:
        for i in range(BIG // BLOCK):
            yield i.to_bytes(8, "big") + base[8:]

    hasher = SM3Hasher()
    for block in blocks():
        hasher.update(block)
    digest = hasher.digest()
    with running_exchange(live_server, tmp_path) as ex:
        owner = ex.provider()
        listing_id = ex.draft(owner, content_digest=digest.hex(), byte_size=BIG)
        header = f"sm3=:{base64.b64encode(digest).decode()}:"
        client = ex.http(owner)
        tracemalloc.start()
        try:
            with RssGrowth() as rss:
                response = client.put(
                    content_path(listing_id),
                    content=blocks(),
                    headers={"Content-Digest": header},
                    timeout=600,
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 201, response.text
        assert response.json()["size"] == BIG
        assert store_of(ex).get(listing_id, 1).sm3_hex == digest.hex()
    assert peak < 16 * 1024 * 1024, f"traced allocations peaked at {peak / 2**20:.1f} MiB"
    assert rss.samples > 1
    assert rss.growth < 48 * 2**20, f"RSS grew by {rss.growth / 2**20:.1f} MiB"
