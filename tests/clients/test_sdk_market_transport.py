"""The marketplace SDK without a server: ``httpx.MockTransport`` plays the exchange
(or the network failing). Idempotency keys and which calls are retried, error
decoding, malformed and forged answers, the streamed upload (precomputed
Content-Digest, progress, a file changing underneath), and the download's
resume rules (Range, Content-Range, 200/206/416, broken connections)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.sdk import (
    AccessRevokedError,
    APIError,
    AsyncExchangeClient,
    DeliveryEnvelope,
    ExchangeClient,
    InsufficientFundsError,
    ResponseFormatError,
    ResponseVerificationError,
    RetryPolicy,
    TransferError,
    TransportError,
)
from clients.signing import SM2RequestSigner, content_digest_of_sm3
from ledger.checkpoint import sign_promise
from ledger.records import SignedRecord, canonical_json, encode_base64
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

FAST = RetryPolicy(max_retries=2, backoff=0.0)
URL = "http://exchange.test"
ORDER_ID = "6f1c2a4e-8b3d-4c5e-9f6a-7b8c9d0e1f2a"
LISTING_ID = "0b7c6f0e-2f61-4a8e-9d4e-6b1f0a6a2c11"
DIGEST = "ab" * 32

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def alice() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


class Recorder:
    """A MockTransport handler that records requests (and their bodies) and answers
    with ``respond``, or with the next of ``answers`` (a callable raises or answers)."""

    def __init__(self, *answers: Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request)

    def client(self, key: SM2PrivateKey, log_key: SM2PrivateKey, **kw: Any) -> ExchangeClient:
        kw.setdefault("retries", FAST)
        return ExchangeClient(
            URL,
            key=key,
            trusted_log_key=log_key.public_key(),
            transport=httpx.MockTransport(self),
            **kw,
        )


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("read timed out", request=request)


def error(status: int, code: str) -> Handler:
    return lambda _request: httpx.Response(status, json={"code": code, "message": "no"})


def appended(log_key: SM2PrivateKey, leaf: bytes, index: int = 7) -> dict[str, Any]:
    promise = sign_promise(log_key, leaf, index, 1_700_000_000_000)
    return {"index": index, "leaf_hash": leaf.hex(), "promise": promise.to_dict()}


def record_of(request: httpx.Request) -> SignedRecord:
    return SignedRecord.from_dict(json.loads(request.read())["record"])


def order_json(buyer: str, **changes: Any) -> dict[str, Any]:
    order = {
        "id": ORDER_ID,
        "buyer": buyer,
        "listing_id": LISTING_ID,
        "version": 1,
        "content_digest": DIGEST,
        "quote_id": "0f" * 16,
        "terms": {"rows": None, "periods": None, "licence": "L"},
        "amount": 19_900,
        "escrow": 19_900,
        "state": "placed",
        "created_at": 1,
        "updated_at": 1,
        "acceptance_deadline": None,
        "access_expires_at": None,
        "placed_leaf_hash": "cd" * 32,
    }
    order.update(changes)
    return order


def order_changed(log_key: SM2PrivateKey, **changes: Any) -> Handler:
    """An honest exchange's answer to a signed action on the order."""

    def respond(request: httpx.Request) -> httpx.Response:
        record = record_of(request)
        body = {
            "order": order_json(record.record.actor, **changes),
            "log": appended(log_key, record.leaf_hash()),
        }
        return httpx.Response(201 if request.url.path == "/orders" else 200, json=body)

    return respond


def a_quote(log_key: SM2PrivateKey, buyer: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "quote_id": "0f" * 16,
        "listing_id": LISTING_ID,
        "listing_version": 1,
        "content_digest": DIGEST,
        "buyer_key_id": buyer,
        "terms": {"rows": None, "periods": None, "licence": "L"},
        "amount": 19_900,
        "currency": "CNY",
        "issued_at": 1_700_000_000_000,
        "expires_at": 1_700_000_900_000,
        "log_key_id": log_key.key_id(),
    }
    signed = log_key.sign(canonical_json({"kind": "shancheng.quote.v1", **fields}))
    return {**fields, **changes, "signature": encode_base64(signed)}


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("fault", [refuse, time_out, error(503, "log_busy")])
def test_a_money_moving_post_is_retried_with_the_same_key_and_record(
    alice: SM2PrivateKey, log_key: SM2PrivateKey, fault: Handler
) -> None:
    recorder = Recorder(fault, fault, order_changed(log_key, state="settled"))
    with recorder.client(alice, log_key) as client:
        order = client.accept(ORDER_ID)
    assert order.state == "settled" and order.log is not None
    assert len(recorder.requests) == 3
    keys = {r.headers["idempotency-key"] for r in recorder.requests}
    assert len(keys) == 1 and len(next(iter(keys))) >= 16
    assert len(set(recorder.bodies)) == 1  # the same signed record each time
    nonces = {r.headers["signature-input"] for r in recorder.requests}
    assert len(nonces) == 3  # each attempt signed afresh (a nonce is never replayed)


def test_idempotency_keys_are_per_call_unless_given(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    recorder = Recorder(order_changed(log_key))
    quote = a_quote(log_key, alice.key_id())
    with recorder.client(alice, log_key) as client:
        client.place_order(quote)
        client.place_order(quote)
        client.place_order(quote, idempotency_key="mine-1")
        client.revoke(ORDER_ID, "breach", idempotency_key="mine-2")
        client.resolve_dispute(ORDER_ID, "refund", "n")
    keys = [r.headers.get("idempotency-key") for r in recorder.requests]
    assert keys[0] != keys[1] and None not in keys
    assert keys[2:4] == ["mine-1", "mine-2"]
    placed = record_of(recorder.requests[0]).record
    assert placed.type == "order.placed" and dict(placed.payload)["quote"] == quote


def test_a_deposit_is_retried_once_exhausted_it_is_a_transport_error(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    recorder = Recorder(refuse)
    with recorder.client(alice, log_key) as client, pytest.raises(TransportError):
        client.deposit(alice.key_id(), 100, "wire", idempotency_key="d-1")
    assert len(recorder.requests) == 3
    assert {r.headers["idempotency-key"] for r in recorder.requests} == {"d-1"}


@pytest.mark.parametrize("fault", [refuse, time_out, error(503, "log_busy")])
def test_other_posts_are_never_retried(
    alice: SM2PrivateKey, log_key: SM2PrivateKey, fault: Handler
) -> None:
    calls: list[Callable[[ExchangeClient], Any]] = [
        lambda c: c.dispute(ORDER_ID, "late"),
        lambda c: c.submit_listing(LISTING_ID),
        lambda c: c.quote(LISTING_ID),
        lambda c: c.request_delivery(ORDER_ID),
        lambda c: c.register("x", "buyer"),
    ]
    for call in calls:
        recorder = Recorder(fault)
        with recorder.client(alice, log_key) as client, pytest.raises((TransportError, APIError)):
            call(client)
        assert len(recorder.requests) == 1, recorder.requests[0].url
        assert "idempotency-key" not in recorder.requests[0].headers


def test_reads_are_retried(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    ok = lambda _r: httpx.Response(200, json=order_json(alice.key_id()))  # noqa: E731
    recorder = Recorder(refuse, error(502, "bad_gateway"), ok)
    with recorder.client(alice, log_key) as client:
        assert client.order(ORDER_ID).id == ORDER_ID
    assert [r.method for r in recorder.requests] == ["GET"] * 3
    assert "signature" in recorder.requests[-1].headers


# --------------------------------------------------------------------------- errors


def test_marketplace_refusals_decode_to_api_errors(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    quote = a_quote(log_key, alice.key_id())
    cases: list[tuple[Handler, Callable[[ExchangeClient], Any], type[APIError], int]] = [
        (
            error(402, "insufficient_funds"),
            lambda c: c.place_order(quote),
            InsufficientFundsError,
            402,
        ),
        (
            error(403, "access_revoked"),
            lambda c: c.request_delivery(ORDER_ID),
            AccessRevokedError,
            403,
        ),
        (error(409, "invalid_state"), lambda c: c.publish_listing(LISTING_ID), APIError, 409),
    ]
    for respond, call, kind, status in cases:
        with Recorder(respond).client(alice, log_key) as client, pytest.raises(kind) as caught:
            call(client)
        assert caught.value.status_code == status and caught.value.message == "no"
    proxy = lambda _r: httpx.Response(502, text="<html>bad gateway</html>")  # noqa: E731
    with Recorder(proxy).client(alice, log_key) as client, pytest.raises(APIError) as caught:
        client.dispute(ORDER_ID, "x")
    assert (caught.value.code, caught.value.status_code) == ("http_error", 502)


def test_malformed_answers_are_response_format_errors(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    buyer = alice.key_id()
    bad_orders = [
        {k: v for k, v in order_json(buyer).items() if k != "state"},
        order_json(buyer, amount="19900"),
        order_json(buyer, amount=1.5),
        order_json(buyer, settlement={"amount": 1, "platform_fee": 0, "payouts": {"x": "1"}}),
        [],
    ]
    for body in bad_orders:
        answer = lambda _r, body=body: httpx.Response(200, json=body)  # noqa: E731
        with Recorder(answer).client(alice, log_key) as client, pytest.raises(ResponseFormatError):
            client.order(ORDER_ID)
    page = {"items": [{"id": "x"}], "next_cursor": None, "total": 1, "facets": None}
    with (
        Recorder(lambda _r: httpx.Response(200, json=page)).client(alice, log_key) as client,
        pytest.raises(ResponseFormatError, match=r"items\[0\]"),
    ):
        client.search("x")
    with (
        Recorder(lambda _r: httpx.Response(200, text="oops")).client(alice, log_key) as client,
        pytest.raises(ResponseFormatError),
    ):
        client.account()


def test_forged_logs_and_quotes_are_refused(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    other_log = SM2PrivateKey.generate()

    def wrong_leaf(request: httpx.Request) -> httpx.Response:
        record_of(request)
        body = {"order": order_json(alice.key_id()), "log": appended(log_key, bytes(32))}
        return httpx.Response(200, json=body)

    def wrong_key(request: httpx.Request) -> httpx.Response:
        leaf = record_of(request).leaf_hash()
        body = {"order": order_json(alice.key_id()), "log": appended(other_log, leaf)}
        return httpx.Response(200, json=body)

    for respond in (wrong_leaf, wrong_key):
        with (
            Recorder(respond).client(alice, log_key) as client,
            pytest.raises(ResponseVerificationError),
        ):
            client.accept(ORDER_ID)

    quotes = {
        "signed by another key": a_quote(other_log, alice.key_id(), log_key_id=log_key.key_id()),
        "altered amount": a_quote(log_key, alice.key_id(), amount=1),
        "someone else's": a_quote(log_key, SM2PrivateKey.generate().key_id()),
    }
    for desc, quote in quotes.items():
        answer = lambda _r, q=quote: httpx.Response(201, json={"quote": q})  # noqa: E731
        with (
            Recorder(answer).client(alice, log_key) as client,
            pytest.raises(ResponseVerificationError, match="quote"),
        ):
            client.quote(LISTING_ID)
        del desc  # the case's name, for a reader of the table


def test_a_delivery_envelope_is_checked(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    def envelope(order_id: str, log: SM2PrivateKey, wrapped: str = "AAEC") -> Handler:
        body = {
            "order_id": order_id,
            "listing_id": LISTING_ID,
            "version": 1,
            "content_digest": DIGEST,
            "size": 10,
            "ciphertext_size": 60,
            "envelope": wrapped,
            "download_path": f"/orders/{order_id}/content",
            "log": appended(log, b"\x11" * 32),
        }
        return lambda _r: httpx.Response(200, json=body)

    with Recorder(envelope(ORDER_ID, log_key)).client(alice, log_key) as client:
        delivered = client.request_delivery(ORDER_ID)
        assert delivered.envelope == b"\x00\x01\x02" and delivered.ciphertext_size == 60
    bad: list[tuple[Handler, type[Exception]]] = [
        (envelope(str(uuid.uuid4()), log_key), ResponseVerificationError),
        (envelope(ORDER_ID, SM2PrivateKey.generate()), ResponseVerificationError),
        (envelope(ORDER_ID, log_key, wrapped="not base64!"), ResponseFormatError),
    ]
    for respond, kind in bad:
        with Recorder(respond).client(alice, log_key) as client, pytest.raises(kind):
            client.request_delivery(ORDER_ID)


def test_argument_mistakes_fail_before_sending(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    recorder = Recorder(refuse)
    with recorder.client(alice, log_key) as client, pytest.raises(TypeError, match="colour"):
        client.search(colour="red")
        with pytest.raises(ValueError, match="outcome"):
            client.resolve_dispute(ORDER_ID, "keep", "n")
        with pytest.raises(ValueError, match="declares"):
            client.new_version(LISTING_ID, {"version": 2, "content_digest": DIGEST})
    assert recorder.requests == []


def test_search_parameters(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    page: dict[str, Any] = {"items": [], "next_cursor": None, "total": 0, "facets": None}
    recorder = Recorder(lambda _r: httpx.Response(200, json=page))
    with recorder.client(alice, log_key) as client:
        result = client.search("重庆 交通", tag=["bus", "night"], facets=False, max_price=None)
    assert result.items == () and result.facets is None
    params = recorder.requests[0].url.params
    assert params.get_list("tag") == ["bus", "night"] and params["facets"] == "false"
    assert params["q"] == "重庆 交通" and "max_price" not in params
    assert "signature" not in recorder.requests[0].headers  # public


# --------------------------------------------------------------------------- upload


def _uploaded(body: bytes, status: int = 201, **changes: Any) -> Handler:
    answer = {"listing_id": LISTING_ID, "version": 1, "sm3": sm3(body).hex(), "size": len(body)}
    answer.update(changes)
    return lambda _r: httpx.Response(status, json=answer)


def test_the_upload_streams_with_a_precomputed_digest(
    alice: SM2PrivateKey, log_key: SM2PrivateKey, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 1000  # 256,000 bytes: several blocks
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    recorder = Recorder(_uploaded(data))
    seen: list[tuple[int, int]] = []
    with recorder.client(alice, log_key) as client:
        uploaded = client.upload_content(
            LISTING_ID, 1, path, progress=lambda d, t: seen.append((d, t))
        )
    assert uploaded.created and uploaded.size == len(data)
    [request] = recorder.requests
    assert (
        request.method == "PUT" and request.url.path == f"/listings/{LISTING_ID}/versions/1/content"
    )
    assert recorder.bodies[0] == data
    assert request.headers["content-digest"] == content_digest_of_sm3(sm3(data))
    assert request.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in request.headers
    assert request.headers["content-type"] == "application/octet-stream"
    assert '"content-digest"' in request.headers["signature-input"]
    assert seen[-1] == (len(data), len(data)) and len(seen) == 4
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    with recorder.client(alice, log_key) as client:
        recorder.answers = [_uploaded(data, status=200)]
        assert not client.upload_content(LISTING_ID, 1, path).created
        recorder.answers = [_uploaded(data, sm3="00" * 32)]
        with pytest.raises(ResponseVerificationError):
            client.upload_content(LISTING_ID, 1, path)
        recorder.answers = [refuse]
        count = len(recorder.requests)
        with pytest.raises(TransportError):
            client.upload_content(LISTING_ID, 1, path)
        assert len(recorder.requests) == count + 1  # never retried: the body is spent


def test_an_upload_whose_file_changes_is_refused(
    alice: SM2PrivateKey, log_key: SM2PrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "data.bin"

    def grow(_done: int, _total: int) -> None:
        with path.open("ab") as handle:
            handle.write(b"more")

    def shrink(_done: int, _total: int) -> None:
        path.write_bytes(b"x")

    for change, what in ((grow, "grew"), (shrink, "shrank")):
        path.write_bytes(b"x" * 200_000)
        with (
            Recorder(_uploaded(b"")).client(alice, log_key) as client,
            pytest.raises(TransferError, match=what),
        ):
            client.upload_content(LISTING_ID, 1, path, progress=change)


def test_the_async_upload_streams_too(
    alice: SM2PrivateKey, log_key: SM2PrivateKey, tmp_path: Path
) -> None:
    data = b"0123456789" * 20_000
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    received: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        received.append(await request.aread())
        assert request.headers["content-digest"] == content_digest_of_sm3(sm3(data))
        return _uploaded(data)(request)

    async def run() -> None:
        async with AsyncExchangeClient(
            URL,
            key=alice,
            trusted_log_key=log_key.public_key(),
            transport=httpx.MockTransport(handler),
        ) as client:
            assert (await client.upload_content(LISTING_ID, 1, path)).created

    asyncio.run(run())
    assert received == [data]


def test_the_signer_covers_a_given_digest_without_reading_the_body(alice: SM2PrivateKey) -> None:
    consumed: list[bytes] = []

    def body() -> Iterator[bytes]:
        consumed.append(b"read")
        yield b"payload"

    digest = content_digest_of_sm3(sm3(b"payload"))
    request = httpx.Request("PUT", f"{URL}/x", content=body(), headers={"Content-Digest": digest})
    SM2RequestSigner(alice).sign(request)
    assert consumed == [] and request.headers["content-digest"] == digest
    assert '"content-digest"' in request.headers["signature-input"]
    with pytest.raises(ValueError):
        content_digest_of_sm3(b"short")


# --------------------------------------------------------------------------- download


CIPHERTEXT = bytes(range(256)) * 64  # 16 KiB


class Server:
    """Serves CIPHERTEXT at the order's content path with ranges, like the exchange;
    ``faults`` (consumed in order) break or change the next answers."""

    def __init__(self, *faults: str, etag: str = '"v1"') -> None:
        self.faults = list(faults)
        self.etag = etag
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        size = len(CIPHERTEXT)
        headers = {"ETag": self.etag, "Accept-Ranges": "bytes"}
        start = 0
        wanted = request.headers.get("range")
        if_range = request.headers.get("if-range")
        ranged = wanted is not None and (if_range is None or if_range == self.etag)
        if fault == "ignore-range":
            ranged = False
        if ranged:
            assert wanted is not None
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= size:
                return httpx.Response(
                    416,
                    json={"code": "range_not_satisfiable", "message": "no"},
                    headers={**headers, "Content-Range": f"bytes */{size}"},
                )
            first = start + 1 if fault == "wrong-start" else start
            headers["Content-Range"] = f"bytes {first}-{size - 1}/{size}"
        body = CIPHERTEXT[start:]
        if fault == "break":
            return httpx.Response(
                206 if ranged else 200,
                headers={**headers, "Content-Length": str(len(body))},
                stream=_Broken(body[: len(body) // 2]),
            )
        if fault == "too-long":
            body += b"extra"
        return httpx.Response(206 if ranged else 200, headers=headers, content=body)


class _Broken(httpx.SyncByteStream):
    """A body that stops with a read error half-way."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.ReadError("connection reset")


def _client(server: Handler, alice: SM2PrivateKey, **kw: Any) -> ExchangeClient:
    kw.setdefault("retries", FAST)
    return ExchangeClient(URL, key=alice, transport=httpx.MockTransport(server), **kw)


def _envelope(size: int = len(CIPHERTEXT)) -> DeliveryEnvelope:
    return DeliveryEnvelope(
        order_id=ORDER_ID,
        listing_id=LISTING_ID,
        version=1,
        content_digest=DIGEST,
        size=1,
        ciphertext_size=size,
        envelope=b"\x01",
        download_path=f"/orders/{ORDER_ID}/content",
    )


def test_a_broken_download_resumes_where_it_stopped(alice: SM2PrivateKey, tmp_path: Path) -> None:
    server = Server("break", "break")
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "c.sm4s"
    with _client(server, alice) as client:
        path = client.download(_envelope(), dest, progress=lambda d, t: seen.append((d, t)))
    assert path == dest and path.read_bytes() == CIPHERTEXT
    ranges = [r.headers.get("range") for r in server.requests]
    half = len(CIPHERTEXT) // 2
    assert ranges == [None, f"bytes={half}-", f"bytes={half + (len(CIPHERTEXT) - half) // 2}-"]
    assert [r.headers.get("if-range") for r in server.requests[1:]] == ['"v1"', '"v1"']
    assert seen[-1] == (len(CIPHERTEXT), len(CIPHERTEXT))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sm4s"]


def test_a_download_that_never_progresses_gives_up(alice: SM2PrivateKey, tmp_path: Path) -> None:
    refusing = Recorder(refuse)
    with _client(refusing, alice) as client, pytest.raises(TransportError):
        client.download(ORDER_ID, tmp_path / "c.sm4s")
    assert len(refusing.requests) == 3  # one attempt + max_retries
    assert list(tmp_path.iterdir()) == []


def test_download_answers_that_do_not_add_up(alice: SM2PrivateKey, tmp_path: Path) -> None:
    dest = tmp_path / "c.sm4s"
    part = tmp_path / "c.sm4s.part"

    part.write_bytes(CIPHERTEXT[:1000])
    with _client(Server("wrong-start"), alice) as client, pytest.raises(ResponseFormatError):
        client.download(ORDER_ID, dest)
    assert part.read_bytes() == CIPHERTEXT[:1000] and not dest.exists()  # kept for a retry

    with _client(Server("too-long"), alice) as client, pytest.raises(ResponseFormatError):
        client.download(_envelope(), dest, resume=False)
    assert not dest.exists()

    with _client(Server(), alice) as client, pytest.raises(ResponseFormatError, match="announced"):
        client.download(_envelope(size=10), dest, resume=False)

    with (
        _client(Recorder(error(409, "not_delivered")), alice) as client,
        pytest.raises(APIError) as caught,
    ):
        client.download(ORDER_ID, dest)
    assert caught.value.code == "not_delivered"


def test_a_server_ignoring_the_range_restarts_the_part(
    alice: SM2PrivateKey, tmp_path: Path
) -> None:
    dest = tmp_path / "c.sm4s"
    (tmp_path / "c.sm4s.part").write_bytes(b"\xff" * 5000)
    server = Server("ignore-range")
    with _client(server, alice) as client:
        assert client.download(_envelope(), dest).read_bytes() == CIPHERTEXT
    assert server.requests[0].headers["range"] == "bytes=5000-"
    assert len(server.requests) == 1


def test_a_complete_part_is_not_downloaded_again(alice: SM2PrivateKey, tmp_path: Path) -> None:
    dest = tmp_path / "c.sm4s"
    (tmp_path / "c.sm4s.part").write_bytes(CIPHERTEXT)
    server = Server()
    with _client(server, alice) as client:
        assert client.download(ORDER_ID, dest).read_bytes() == CIPHERTEXT
    [request] = server.requests
    assert request.headers["range"] == f"bytes={len(CIPHERTEXT)}-"

    # longer than the content: discarded, downloaded whole
    (tmp_path / "c.sm4s.part").write_bytes(CIPHERTEXT + b"more")
    server = Server()
    with _client(server, alice) as client:
        assert client.download(ORDER_ID, dest).read_bytes() == CIPHERTEXT
    assert [r.headers.get("range") for r in server.requests] == [
        f"bytes={len(CIPHERTEXT) + 4}-",
        None,
    ]


def test_a_part_of_another_ciphertext_is_replaced(alice: SM2PrivateKey, tmp_path: Path) -> None:
    dest = tmp_path / "c.sm4s"
    (tmp_path / "c.sm4s.part").write_bytes(b"\x00" * 100)
    (tmp_path / "c.sm4s.part.etag").write_text('"v0"')
    server = Server(etag='"v1"')
    with _client(server, alice) as client:
        assert client.download(ORDER_ID, dest).read_bytes() == CIPHERTEXT
    assert server.requests[0].headers["if-range"] == '"v0"'
    assert not (tmp_path / "c.sm4s.part.etag").exists()


def test_the_async_download_resumes_too(alice: SM2PrivateKey, tmp_path: Path) -> None:
    dest = tmp_path / "c.sm4s"
    (tmp_path / "c.sm4s.part").write_bytes(CIPHERTEXT[:3000])
    server = Server()

    async def handler(request: httpx.Request) -> httpx.Response:
        response = server(request)
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.read()
        )

    async def run() -> None:
        async with AsyncExchangeClient(
            URL, key=alice, retries=FAST, transport=httpx.MockTransport(handler)
        ) as client:
            assert (await client.download(_envelope(), dest)).read_bytes() == CIPHERTEXT

    asyncio.run(run())
    assert server.requests[0].headers["range"] == "bytes=3000-"
