"""RFC 9421 sm2-sm3 request authentication over a real uvicorn: the happy path and
each refusal with its code (missing, malformed, unknown key, stale, future,
replayed across workers, tampered body/headers/target, wrong alg/coverage)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from test_auth_support import Exchange, error, listing_content, running_exchange
from test_orders import BACKENDS

from clients.signing import (
    COVERED_COMPONENTS,
    SIGNATURE_LABEL,
    SM2_SM3,
    SigningError,
    SM2RequestSigner,
    content_digest,
    content_digest_of_file,
)
from exchange.app import create_app
from exchange.auth import algorithm as server_algorithm
from exchange.auth.models import auth_nonce_table
from exchange.auth.verifier import MAX_SIGNATURE_HEADER_CHARS
from exchange.settings import Settings
from ledger.errors import InvalidSignature
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=BACKENDS)
def exchange(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Any:
    with running_exchange(live_server, tmp_path, request.param, auth_clock_skew_s=60) as ex:
        yield ex


def _signed(ex: Exchange, key: SM2PrivateKey, method: str, path: str, **kw: Any) -> httpx.Request:
    request = httpx.Request(method, ex.url + path, **kw)
    SM2RequestSigner(key).sign(request)
    return request


def _send(ex: Exchange, request: httpx.Request) -> httpx.Response:
    return ex.http().send(request)


def test_signed_requests_authenticate_participants_and_operators(exchange: Exchange) -> None:
    buyer = exchange.register("buyer", "买方")
    me = exchange.http(buyer).get("/participants/me")
    assert me.status_code == 200, me.text
    assert me.json()["key_id"] == buyer.key_id()
    assert me.json()["role"] == "buyer"
    operator = exchange.http(exchange.operator).get("/participants/me")
    assert operator.json()["role"] == "operator"
    request = _signed(exchange, buyer, "GET", "/participants/me")
    assert request.headers["content-digest"] == content_digest(b"")
    assert 'alg="sm2-sm3"' in request.headers["signature-input"]
    assert f'keyid="{buyer.key_id()}"' in request.headers["signature-input"]
    assert '("@method" "@target-uri" "content-digest")' in request.headers["signature-input"]


def test_unsigned_and_malformed_requests_are_unauthenticated(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    error(exchange.http().get("/participants/me"), 401, "unauthenticated")
    good = _signed(exchange, buyer, "GET", "/participants/me")
    cases: dict[str, dict[str, str]] = {
        "garbage signature-input": {
            "signature-input": "(((",
            "signature": good.headers["signature"],
        },
        "no signature": {"signature": ""},
        "no content-digest": {"content-digest": ""},
        "bad digest syntax": {"content-digest": "sm3=notbytes"},
        "unknown digest only": {"content-digest": "md5=:AAAA:"},
    }
    for desc, changes in cases.items():
        headers = dict(good.headers)
        for name, value in changes.items():
            if value:
                headers[name] = value
            else:
                headers.pop(name, None)
        request = httpx.Request("GET", good.url, headers=headers)
        response = _send(exchange, request)
        assert response.status_code == 401, (desc, response.text)
        assert response.json()["code"] in {"unauthenticated", "signature_invalid"}, desc


def test_signature_input_must_cover_components_and_name_the_algorithm(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    good = _signed(exchange, buyer, "GET", "/participants/me")
    sig_input = good.headers["signature-input"]
    cases = {
        "alg missing": sig_input.replace(';alg="sm2-sm3"', ""),
        "other alg": sig_input.replace('alg="sm2-sm3"', 'alg="ed25519"'),
        "no digest covered": sig_input.replace(' "content-digest"', ""),
        "no nonce": sig_input.split(";nonce=")[0] + ';keyid="' + buyer.key_id() + '"',
        "short nonce": sig_input.replace(";nonce=", ';nonce="x";old='),
    }
    for desc, value in cases.items():
        headers = dict(good.headers) | {"signature-input": value}
        message = error(
            _send(exchange, httpx.Request("GET", good.url, headers=headers)), 401, "unauthenticated"
        )
        assert message, desc


def test_unknown_key_and_wrong_key(exchange: Exchange) -> None:
    stranger = SM2PrivateKey.generate()
    error(exchange.http(stranger).get("/participants/me"), 401, "unknown_key")
    buyer = exchange.register("buyer")
    forged = _signed(exchange, stranger, "GET", "/participants/me")
    headers = dict(forged.headers)
    headers["signature-input"] = headers["signature-input"].replace(
        stranger.key_id(), buyer.key_id()
    )
    error(
        _send(exchange, httpx.Request("GET", forged.url, headers=headers)), 401, "signature_invalid"
    )


def test_stale_and_future_signatures_are_refused(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    for offset in (-61, +61, -10_000):
        client = httpx.Client(
            base_url=exchange.url,
            auth=SM2RequestSigner(buyer, clock=lambda o=offset: time.time() + o),
        )
        with client:
            error(client.get("/participants/me"), 401, "stale_signature")
    within = httpx.Client(
        base_url=exchange.url, auth=SM2RequestSigner(buyer, clock=lambda: time.time() - 50)
    )
    with within:
        assert within.get("/participants/me").status_code == 200


def test_replayed_nonce_is_refused_also_by_another_worker(
    exchange: Exchange, live_server: Any, tmp_path: Path
) -> None:
    buyer = exchange.register("buyer")
    request = _signed(exchange, buyer, "GET", "/participants/me")
    assert _send(exchange, request).status_code == 200
    error(_send(exchange, request), 401, "replayed_nonce")
    # A second worker (another app and server) on the same database, behind the same
    # Host: a request accepted by one worker is a replay at the other.
    settings: Settings = exchange.app.state.settings
    second = create_app(settings.model_copy(update={"data_dir": tmp_path / "second"}))
    fresh = _signed(exchange, buyer, "GET", "/participants/me")
    with live_server(second) as url, httpx.Client() as client:
        at_second = httpx.Request("GET", url + "/participants/me", headers=fresh.headers)
        assert client.send(at_second).status_code == 200
        error(_send(exchange, fresh), 401, "replayed_nonce")


def _send_at_once(request: httpx.Request, bases: list[str]) -> list[httpx.Response]:
    """Send ``request`` (its signed headers) to each server of ``bases`` at once."""
    barrier = threading.Barrier(len(bases))
    responses: list[httpx.Response] = []

    def send(base: str) -> None:
        copy = httpx.Request(
            request.method,
            base + request.url.raw_path.decode(),
            headers=request.headers,
            content=request.content,
        )
        with httpx.Client() as client:
            barrier.wait(timeout=30)
            responses.append(client.send(copy))

    threads = [threading.Thread(target=send, args=(base,)) for base in bases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(responses) == len(bases)
    return responses


def test_one_signed_request_sent_to_two_workers_at_once_is_accepted_once(
    exchange: Exchange, live_server: Any, tmp_path: Path
) -> None:
    """The nonce store is the shared database: of the same signed request sent to
    two workers (two apps, two servers) at the same moment, one is accepted."""
    buyer = exchange.register("buyer")
    settings: Settings = exchange.app.state.settings
    second = create_app(settings.model_copy(update={"data_dir": tmp_path / "second"}))
    with live_server(second) as url:
        for _ in range(5):
            request = _signed(exchange, buyer, "GET", "/participants/me")
            responses = _send_at_once(request, [exchange.url, url] * 2)
            assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]
            for response in responses:
                if response.status_code == 401:
                    error(response, 401, "replayed_nonce")


def test_same_nonce_different_request_is_a_replay(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    signer = SM2RequestSigner(buyer, nonce=lambda: "fixed-nonce-0123456789")
    with httpx.Client(base_url=exchange.url, auth=signer) as client:
        assert client.get("/participants/me").status_code == 200
        error(client.get("/listings"), 401, "replayed_nonce")


def test_body_digest_and_covered_components_are_enforced(exchange: Exchange) -> None:
    provider = exchange.provider()
    request = _signed(exchange, provider, "POST", "/listings", json={"record": {}})
    del request.headers["content-length"]
    tampered_body = httpx.Request(
        "POST", request.url, headers=request.headers, content=b'{"record": {"x": 1}}'
    )
    error(_send(exchange, tampered_body), 401, "digest_mismatch")
    headers = dict(request.headers) | {"content-digest": content_digest(b"{}")}
    error(
        _send(exchange, httpx.Request("POST", request.url, headers=headers, content=b"{}")),
        401,
        "signature_invalid",
    )
    other_path = httpx.Request(
        "POST",
        exchange.url + "/listings/x/submit",
        headers=request.headers,
        content=request.content,
    )
    error(_send(exchange, other_path), 401, "signature_invalid")
    other_method = httpx.Request(
        "GET", request.url, headers=request.headers, content=request.content
    )
    error(_send(exchange, other_method), 401, "signature_invalid")
    query = _signed(exchange, provider, "GET", "/listings?state=draft")
    moved = httpx.Request("GET", exchange.url + "/listings?state=published", headers=query.headers)
    error(_send(exchange, moved), 401, "signature_invalid")


def test_sha256_content_digest_is_accepted_too(exchange: Exchange) -> None:
    import base64
    import hashlib

    buyer = exchange.register("buyer")
    request = httpx.Request("GET", exchange.url + "/participants/me")
    digest = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    request.headers["Content-Digest"] = f"sha-256=:{digest}:"
    SM2RequestSigner(buyer).sign(request)
    assert _send(exchange, request).status_code == 200


def test_a_replayed_signed_write_is_refused_and_leaves_nothing(exchange: Exchange) -> None:
    """A write's nonce is stored with its effect (in the batch item): the replay of
    an accepted draft is refused at its nonce, before any duplicate check."""
    provider = exchange.provider()
    body = exchange.signed_body(
        provider,
        "listing.drafted",
        {"listing_id": str(uuid.uuid4()), **listing_content(provider.key_id())},
    )
    request = _signed(exchange, provider, "POST", "/listings", json=body)
    assert _send(exchange, request).status_code == 201
    size = exchange.log_size()
    error(_send(exchange, request), 401, "replayed_nonce")
    assert exchange.log_size() == size


def test_a_refused_write_still_spends_its_nonce(exchange: Exchange) -> None:
    """Refused by the endpoint (here: a malformed record) or by its batch item, a
    write's nonce is stored all the same before the answer: its replay is a replay."""
    provider = exchange.provider()
    request = _signed(exchange, provider, "POST", "/listings", json={"record": {}})
    error(_send(exchange, request), 400, "invalid_record")
    error(_send(exchange, request), 401, "replayed_nonce")
    taken = exchange.draft(provider)
    body = exchange.signed_body(
        provider, "listing.drafted", {"listing_id": taken, **listing_content(provider.key_id())}
    )
    request = _signed(exchange, provider, "POST", "/listings", json=body)
    assert _send(exchange, request).status_code == 409
    error(_send(exchange, request), 401, "replayed_nonce")


def test_one_signed_write_sent_to_two_workers_at_once_is_accepted_once(
    exchange: Exchange, live_server: Any, tmp_path: Path
) -> None:
    provider = exchange.provider()
    settings: Settings = exchange.app.state.settings
    second = create_app(settings.model_copy(update={"data_dir": tmp_path / "second"}))
    with live_server(second) as url:
        for base in (exchange.url, url):  # routes are built on first use, not thread-safely
            assert httpx.post(base + "/listings", json={}).status_code == 401
        for _ in range(3):
            body = exchange.signed_body(
                provider,
                "listing.drafted",
                {"listing_id": str(uuid.uuid4()), **listing_content(provider.key_id())},
            )
            request = _signed(exchange, provider, "POST", "/listings", json=body)
            responses = _send_at_once(request, [exchange.url, url])
            assert sorted(r.status_code for r in responses) == [201, 401], [
                r.text for r in responses
            ]


def test_expired_nonces_are_pruned(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    engine = exchange.app.state.engine
    with engine.begin() as connection:
        connection.execute(
            insert(auth_nonce_table).values(key_id=buyer.key_id(), nonce="old" * 6, expires_at=1)
        )
    time.sleep(1.1)  # the prune runs at most once a second per process
    assert exchange.http(buyer).get("/participants/me").status_code == 200
    with engine.connect() as connection:
        nonces = connection.execute(select(auth_nonce_table.c.nonce)).scalars().all()
    assert "old" * 6 not in nonces
    assert len(nonces) >= 1


def test_suspended_participant_is_refused_everywhere(exchange: Exchange) -> None:
    buyer = exchange.register("buyer")
    response = exchange.act(
        exchange.operator,
        "POST",
        f"/participants/{buyer.key_id()}/suspend",
        "participant.suspended",
        {"participant": buyer.key_id(), "reason": "fraud"},
    )
    assert response.status_code == 200, response.text
    error(exchange.http(buyer).get("/participants/me"), 403, "participant_suspended")
    error(exchange.http(buyer).get("/listings"), 403, "participant_suspended")


def test_client_and_server_algorithms_agree_and_refuse_tampering() -> None:
    key = SM2PrivateKey.generate()
    signature = SM2_SM3(private_key=key).sign(b"base")
    assert len(signature) == 64
    server_algorithm.SM2_SM3(public_key=key.public_key()).verify(signature, b"base")
    with pytest.raises(InvalidSignature):
        server_algorithm.SM2_SM3(public_key=key.public_key()).verify(signature, b"basf")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(InvalidSignature):
        server_algorithm.SM2_SM3(public_key=key.public_key()).verify(flipped, b"base")
    assert server_algorithm.content_digest(b"abc") == content_digest(b"abc")


def test_streamed_bodies_need_a_precomputed_digest(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 100_000)

    def chunks() -> Any:
        yield path.read_bytes()

    request = httpx.Request("PUT", "http://example.test/upload", content=chunks())
    with pytest.raises(SigningError):
        SM2RequestSigner(key).sign(request)
    request.headers["Content-Digest"] = content_digest_of_file(path)
    SM2RequestSigner(key).sign(request)
    assert request.headers["content-digest"] == content_digest(path.read_bytes())
    assert "signature" in request.headers


class _TaggedSigner(SM2RequestSigner):
    """Signs as the SDK does, adding a ``tag`` parameter of the caller's to the
    signature (RFC 9421 allows one; the exchange ignores it)."""

    def __init__(self, key: SM2PrivateKey, tag: str) -> None:
        super().__init__(key)
        self.tag = tag

    def sign(self, request: httpx.Request) -> None:
        if "content-digest" not in request.headers:
            request.headers["Content-Digest"] = content_digest(request.content)
        self._signer.sign(
            request,
            key_id=self.key_id,
            created=datetime.datetime.now(datetime.UTC),
            nonce=secrets.token_urlsafe(16),
            label=SIGNATURE_LABEL,
            tag=self.tag,
            include_alg=True,
            covered_component_ids=COVERED_COMPONENTS,
            use_existing_digest=True,
        )


PADDING = 8_000
"""Bytes of padding: far beyond any signature header the SDK sends, well within the
16 KiB of headers uvicorn (h11) reads; the header is parsed in full (~3 µs a byte)."""


def test_long_signature_headers_are_refused_before_they_are_parsed(exchange: Exchange) -> None:
    """A signature header far longer than any real one is refused (401) before any
    parser reads it, even when the padding is signed or an ignored member."""
    buyer = exchange.register("buyer")
    for header in ("Signature-Input", "Signature", "Content-Digest"):
        request = httpx.Request("GET", exchange.url + "/participants/me")
        if header == "Signature-Input":  # signed and well formed: it was accepted
            _TaggedSigner(buyer, "t" * PADDING).sign(request)
        else:  # another member, of an algorithm or label nobody uses: parsed in full
            SM2RequestSigner(buyer).sign(request)
            request.headers[header] += f", other=:{'A' * PADDING}:"
        assert len(request.headers[header]) > PADDING
        message = error(_send(exchange, request), 401, "unauthenticated")
        assert header in message and str(MAX_SIGNATURE_HEADER_CHARS) in message, message


def test_the_longest_real_signature_headers_are_within_the_limit(exchange: Exchange) -> None:
    """A nonce of 128 characters (the most the exchange takes), both digests and a
    short tag: accepted."""
    buyer = exchange.register("buyer")
    request = httpx.Request("GET", exchange.url + "/participants/me")
    sha256 = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    request.headers["Content-Digest"] = f"{content_digest(b'')}, sha-256=:{sha256}:"
    SM2RequestSigner(buyer, nonce=lambda: "n" * 128).sign(request)
    assert _send(exchange, request).status_code == 200
    tagged = httpx.Request("GET", exchange.url + "/participants/me")
    _TaggedSigner(buyer, "shancheng-sdk").sign(tagged)
    assert _send(exchange, tagged).status_code == 200
