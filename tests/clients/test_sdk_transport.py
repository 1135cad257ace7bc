"""The SDK without a server: ``httpx.MockTransport`` plays the exchange (or the
network failing). Transport faults, retries (GET only, bounded; a POST never),
error decoding, malformed and forged answers, request signing, configuration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.sdk import (
    NO_RETRIES,
    APIError,
    AsyncExchangeClient,
    ClientConfigError,
    ExchangeClient,
    MissingKeyError,
    ReceiptPendingError,
    ResponseFormatError,
    ResponseVerificationError,
    RetryPolicy,
    TransportError,
)
from clients.sdk._base import Call
from ledger.checkpoint import sign_checkpoint, sign_promise
from ledger.records import RecordFormatError, SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

FAST = RetryPolicy(max_retries=2, backoff=0.0)
URL = "http://exchange.test"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def log_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def alice() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


class Recorder:
    """A MockTransport handler that records requests and answers with ``respond``."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    def client(self, **kwargs: Any) -> ExchangeClient:
        kwargs.setdefault("retries", FAST)
        return ExchangeClient(URL, transport=httpx.MockTransport(self), **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncExchangeClient:
        kwargs.setdefault("retries", FAST)
        return AsyncExchangeClient(URL, transport=httpx.MockTransport(self), **kwargs)


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _error(status: int, code: str, message: str = "no") -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message})


def _answer(status: int, body: Any) -> Handler:
    return lambda _request: httpx.Response(status, json=body)


def _checkpoint_body(log_key: SM2PrivateKey, size: int = 3) -> dict[str, Any]:
    return sign_checkpoint(log_key, size, bytes(range(32)), 1_700_000_000_000).to_dict()


# --------------------------------------------------------------------------- transport faults


def test_a_get_is_retried_on_connect_errors_then_fails_as_transport_error() -> None:
    recorder = Recorder(_refuse)
    with recorder.client() as client, pytest.raises(TransportError) as caught:
        client.entry(0)
    assert len(recorder.requests) == 3  # one attempt + max_retries
    assert isinstance(caught.value.cause, httpx.ConnectError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert not isinstance(caught.value, APIError)
    assert "GET http://exchange.test/log/entries/0 failed" in str(caught.value)


def test_no_retries_means_one_attempt() -> None:
    recorder = Recorder(_refuse)
    with recorder.client(retries=NO_RETRIES) as client, pytest.raises(TransportError):
        client.health()
    assert len(recorder.requests) == 1


def test_a_post_is_never_retried(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    signed = sign_record(alice, "order.placed", {"order": "O-1"})
    for respond in (_refuse, lambda _r: _error(503, "log_busy"), lambda _r: _error(502, "x")):
        recorder = Recorder(respond)
        with recorder.client(key=alice, trusted_log_key=log_key.public_key()) as client:
            with pytest.raises((TransportError, APIError)) as one:
                client.append(signed)
            with pytest.raises((TransportError, APIError)) as many:
                client.append_many([signed])
        assert type(one.value) is type(many.value)
        assert [r.method for r in recorder.requests] == ["POST", "POST"]


def test_a_post_that_times_out_is_a_transport_error_not_retried(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    recorder = Recorder(slow)
    with (
        recorder.client(key=alice, trusted_log_key=log_key.public_key()) as client,
        pytest.raises(TransportError, match="timed out"),
    ):
        client.append(client.sign("order.placed", {"order": "O-2"}))
    assert len(recorder.requests) == 1


def test_a_get_is_retried_on_503_and_succeeds(log_key: SM2PrivateKey) -> None:
    answers = [_error(503, "log_busy"), httpx.Response(502, text="<html>bad gateway</html>")]

    def respond(_request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else httpx.Response(200, json=_checkpoint_body(log_key))

    recorder = Recorder(respond)
    with recorder.client(trusted_log_key=log_key.public_key()) as client:
        assert client.checkpoint().tree_size == 3
    assert len(recorder.requests) == 3


def test_retries_are_bounded_and_the_last_answer_decoded() -> None:
    recorder = Recorder(lambda _r: _error(503, "shutting_down", "the server is stopping"))
    with recorder.client() as client, pytest.raises(APIError) as caught:
        client.anchors()
    assert len(recorder.requests) == 3
    assert (caught.value.status_code, caught.value.code) == (503, "shutting_down")
    assert caught.value.message == "the server is stopping"


def test_client_errors_are_not_retried() -> None:
    recorder = Recorder(lambda _r: _error(404, "entry_not_found"))
    with recorder.client() as client, pytest.raises(APIError):
        client.entry(5)
    assert len(recorder.requests) == 1


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(max_retries=5, backoff=0.2, max_backoff=2.0)
    assert [policy.delay(n) for n in range(5)] == [0.2, 0.4, 0.8, 1.6, 2.0]
    assert policy.delay(0, "1") == 1.0
    assert policy.delay(0, "120") == 2.0  # capped
    assert policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.4  # a date: computed
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_async_client_retries_gets_only(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    async def scenario() -> tuple[int, int]:
        gets = Recorder(_refuse)
        async with gets.async_client() as client:
            with pytest.raises(TransportError):
                await client.entry(0)
        posts = Recorder(_refuse)
        async with posts.async_client(key=alice, trusted_log_key=log_key.public_key()) as client:
            with pytest.raises(TransportError):
                await client.append(client.sign("order.placed", {"order": "O-3"}))
        return len(gets.requests), len(posts.requests)

    assert asyncio.run(scenario()) == (3, 1)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("response", "status", "code", "message"),
    [
        (_error(404, "entry_not_found", "no entry at index 9"), 404, "entry_not_found", None),
        (_error(409, "receipt_pending", "not yet"), 409, "receipt_pending", "not yet"),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), 502, "http_error", None),
        (httpx.Response(500), 500, "http_error", "Internal Server Error"),
        (httpx.Response(400, json={"detail": "x"}), 400, "http_error", None),
        (httpx.Response(400, json={"code": 7, "message": "x"}), 400, "http_error", None),
    ],
)
def test_error_responses_become_api_errors(
    response: httpx.Response, status: int, code: str, message: str | None
) -> None:
    with (
        Recorder(lambda _r: response).client(retries=NO_RETRIES) as client,
        pytest.raises(APIError) as caught,
    ):
        client.receipt(9)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    if message is not None:
        assert caught.value.message == message
    assert isinstance(caught.value, ReceiptPendingError) == (code == "receipt_pending")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"index": 0}).encode(),
        json.dumps({"first": 1, "second": 2, "hashes": ["zz"]}).encode(),
        json.dumps({"first": 1, "second": 2, "hashes": ["00" * 31]}).encode(),
        json.dumps({"first": -1, "second": 2, "hashes": []}).encode(),
    ],
)
def test_malformed_success_bodies_are_response_format_errors(body: bytes) -> None:
    with (
        Recorder(lambda _r: httpx.Response(200, content=body)).client() as client,
        pytest.raises(ResponseFormatError),
    ):
        client.consistency_proof(1, 2)


def test_unknown_response_fields_are_ignored() -> None:
    body = {"first": 1, "second": 2, "hashes": ["ab" * 32], "added_later": True}
    with Recorder(lambda _r: httpx.Response(200, json=body)).client() as client:
        proof = client.consistency_proof(1, 2)
    assert proof.hash_bytes == (bytes([0xAB] * 32),)


def test_health_503_is_a_degraded_health_unless_it_is_not_one() -> None:
    degraded = {
        "status": "degraded",
        "database": {"ok": False, "backend": "sqlite", "url": "sqlite:///x", "detail": "gone"},
        "chain": {"ok": False, "configured": False},
    }
    with Recorder(lambda _r: httpx.Response(503, json=degraded)).client() as client:
        health = client.health()
    assert not health.ok and health.database.detail == "gone"
    with (
        Recorder(lambda _r: _error(503, "shutting_down")).client() as client,
        pytest.raises(APIError) as caught,
    ):
        client.health()
    assert caught.value.code == "shutting_down"


# --------------------------------------------------------------------------- forged answers


def _appended(log_key: SM2PrivateKey, leaf: bytes, index: int) -> dict[str, Any]:
    promise = sign_promise(log_key, leaf, index, 1_700_000_000_000)
    return {"index": index, "leaf_hash": leaf.hex(), "promise": promise.to_dict()}


def test_append_checks_the_promise(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    signed = sign_record(alice, "order.placed", {"order": "O-4"})
    leaf = signed.leaf_hash()
    other_log = SM2PrivateKey.generate()
    forged_leaf = bytes(32)
    honest = _appended(log_key, leaf, 4)
    bad_signature = dict(
        honest,
        promise=dict(
            honest["promise"], signature=_appended(log_key, forged_leaf, 4)["promise"]["signature"]
        ),
    )
    cases = {
        "another leaf": _appended(log_key, forged_leaf, 4),
        "another log key": _appended(other_log, leaf, 4),
        "another index": dict(honest, index=5),
        "bad signature": bad_signature,
    }
    for desc, answer in cases.items():
        recorder = Recorder(_answer(201, answer))
        with (
            recorder.client(key=alice, trusted_log_key=log_key.public_key()) as client,
            pytest.raises(ResponseVerificationError),
        ):
            client.append(signed)
        assert len(recorder.requests) == 1, desc
    recorder = Recorder(lambda _r: httpx.Response(201, json=honest))
    with recorder.client(key=alice, trusted_log_key=log_key.public_key()) as client:
        appended = client.append(signed)
    assert (appended.index, appended.leaf_hash_bytes) == (4, leaf)


def test_append_fetches_the_log_key_once_before_writing(
    alice: SM2PrivateKey, log_key: SM2PrivateKey
) -> None:
    signed = [sign_record(alice, "order.placed", {"order": f"O-{n}"}) for n in range(2)]
    published = {
        "key_id": log_key.key_id(),
        "public_key": log_key.public_key().to_pem().decode(),
    }

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/shancheng/log-key":
            return httpx.Response(200, json=published)
        body = json.loads(request.content)
        assert body["public_key"] == alice.public_key().to_pem().decode()
        leaf = SignedRecord.from_dict(body["record"]).leaf_hash()
        return httpx.Response(201, json=_appended(log_key, leaf, len(recorder.requests)))

    recorder = Recorder(respond)
    with recorder.client(key=alice) as client:
        client.append(signed[0])
        client.append(signed[1])
    assert [r.url.path for r in recorder.requests] == [
        "/.well-known/shancheng/log-key",
        "/log/records",
        "/log/records",
    ]


def test_a_batch_answer_must_match_the_batch(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    records = [sign_record(alice, "order.placed", {"order": f"B-{n}"}) for n in range(2)]
    leaves = [r.leaf_hash() for r in records]
    cases = {
        "short": [_appended(log_key, leaves[0], 0)],
        "gap": [_appended(log_key, leaves[0], 0), _appended(log_key, leaves[1], 2)],
        "swapped": [_appended(log_key, leaves[1], 0), _appended(log_key, leaves[0], 1)],
    }
    for desc, appended in cases.items():
        recorder = Recorder(_answer(201, {"appended": appended}))
        with (
            recorder.client(key=alice, trusted_log_key=log_key.public_key()) as client,
            pytest.raises(ResponseVerificationError),
        ):
            client.append_many(records)
        assert len(recorder.requests) == 1, desc


def test_entries_and_checkpoints_are_verified(alice: SM2PrivateKey, log_key: SM2PrivateKey) -> None:
    signed = sign_record(alice, "order.placed", {"order": "E-1"})
    leaf = signed.leaf_hash()
    entry = {
        "index": 2,
        "leaf_hash": leaf.hex(),
        "record": signed.to_dict(),
        "public_key": alice.public_key().to_pem().decode(),
        "promise": _appended(log_key, leaf, 2)["promise"],
    }
    edited = json.loads(json.dumps(entry))
    edited["record"]["record"]["payload"]["order"] = "E-2"
    mallory = SM2PrivateKey.generate()
    cases = {
        "edited record": edited,
        "another actor's key": dict(entry, public_key=mallory.public_key().to_pem().decode()),
        "another index": dict(entry, index=3),
        "promise by another log": dict(
            entry, promise=_appended(SM2PrivateKey.generate(), leaf, 2)["promise"]
        ),
    }
    pinned = log_key.public_key()
    for desc, body in cases.items():
        with Recorder(_answer(200, body)).client(trusted_log_key=pinned) as client:
            with pytest.raises(ResponseVerificationError):
                client.entry(2)
            assert desc
    with Recorder(lambda _r: httpx.Response(200, json=entry)).client(
        trusted_log_key=pinned
    ) as client:
        assert client.entry(2).signed_record == signed

    checkpoint = _checkpoint_body(log_key, 3)
    forged = dict(checkpoint, root="00" * 32)
    for body, size in ((forged, None), (checkpoint, 4)):
        with (
            Recorder(_answer(200, body)).client(trusted_log_key=pinned) as client,
            pytest.raises(ResponseVerificationError),
        ):
            client.checkpoint(size)


# --------------------------------------------------------------------------- signing, keys


def test_signed_calls_carry_an_rfc9421_signature_and_public_ones_do_not(
    alice: SM2PrivateKey,
) -> None:
    recorder = Recorder(lambda _r: httpx.Response(200, json={}))
    with recorder.client(key=alice) as client:
        client._send(Call("POST", "/participants", lambda r: r.json(), json={"a": 1}, signed=True))
        client._send(Call("GET", "/log/anchors", lambda r: r.json()))
    signed, public = recorder.requests
    assert {"signature", "signature-input", "content-digest"} <= set(signed.headers)
    assert f'keyid="{alice.key_id()}"' in signed.headers["signature-input"]
    assert 'alg="sm2-sm3"' in signed.headers["signature-input"]
    assert not {"signature", "signature-input"} & set(public.headers)


def test_a_signed_call_without_a_key_is_refused_before_sending() -> None:
    recorder = Recorder(lambda _r: httpx.Response(200, json={}))
    with recorder.client() as client, pytest.raises(MissingKeyError):
        client._send(Call("POST", "/participants", lambda r: r.json(), signed=True))
        with pytest.raises(MissingKeyError):
            client.sign("order.placed", {})
        other = sign_record(SM2PrivateKey.generate(), "order.placed", {})
        with pytest.raises(MissingKeyError):
            client.append(other)  # whose public key?
    assert recorder.requests == []


def test_an_explicit_auth_replaces_the_key_signer(alice: SM2PrivateKey) -> None:
    class Marker(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Any:
            request.headers["X-Test-Auth"] = "yes"
            yield request

    recorder = Recorder(lambda _r: httpx.Response(200, json={}))
    with recorder.client(key=alice, auth=Marker()) as client:
        client._send(Call("POST", "/x", lambda r: r.json(), signed=True))
    assert recorder.requests[0].headers["x-test-auth"] == "yes"
    assert "signature" not in recorder.requests[0].headers


def test_sign_builds_records_with_the_client_key(alice: SM2PrivateKey) -> None:
    with ExchangeClient(URL, key=alice) as client:
        signed = client.sign("deposit.credited", {"amount_fen": 100}, timestamp=1_700_000_000_000)
        assert client.key_id == alice.key_id() == signed.record.actor
        assert signed.record.timestamp == 1_700_000_000_000
        signed.verify(alice.public_key())
        with pytest.raises(RecordFormatError):
            client.sign("deposit.credited", {"amount": 1.5})  # never floats for money


def test_append_refuses_a_public_key_that_is_not_the_actor_s(alice: SM2PrivateKey) -> None:
    recorder = Recorder(lambda _r: httpx.Response(500))
    signed = sign_record(SM2PrivateKey.generate(), "order.placed", {})
    with recorder.client(key=alice) as client, pytest.raises(ValueError, match="actor"):
        client.append(signed)
        with pytest.raises(ValueError, match="at least one"):
            client.append_many([])
        with pytest.raises(ValueError, match="exactly one"):
            client.inclusion_proof()
    assert recorder.requests == []


def test_the_client_closes_its_connection_pool() -> None:
    with ExchangeClient(URL) as client:
        assert not client._http.is_closed
    assert client._http.is_closed

    async def scenario() -> bool:
        async with AsyncExchangeClient(URL) as async_client:
            pass
        return async_client._http.is_closed

    assert asyncio.run(scenario())


@pytest.mark.parametrize("url", ["exchange.test", "ftp://x", "http://", ""])
def test_bad_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ExchangeClient(url)


def test_a_base_url_path_prefix_is_kept(log_key: SM2PrivateKey) -> None:
    recorder = Recorder(lambda _r: httpx.Response(200, json=_checkpoint_body(log_key)))
    with ExchangeClient(
        "http://gw.test/exchange/",
        transport=httpx.MockTransport(recorder),
        trusted_log_key=log_key.public_key(),
    ) as client:
        client.checkpoint()
    assert str(recorder.requests[0].url) == "http://gw.test/exchange/log/checkpoint"


def test_from_env(tmp_path: Path, alice: SM2PrivateKey) -> None:
    plain = tmp_path / "alice.pem"
    plain.write_bytes(alice.to_pem())
    locked = tmp_path / "alice-locked.pem"
    locked.write_bytes(alice.to_pem(password=b"s3cret"))
    password = tmp_path / "password"
    password.write_bytes(b"s3cret\n")

    with ExchangeClient.from_env({}) as reader:
        assert reader.base_url == "http://127.0.0.1:8000" and reader.key is None
    env = {"SHANCHENG_EXCHANGE_URL": "http://x.test:9000", "SHANCHENG_KEY_FILE": str(plain)}
    with ExchangeClient.from_env(env, timeout=3.0) as client:
        assert client.base_url == "http://x.test:9000"
        assert client.key_id == alice.key_id() and client.timeout == 3.0
    env = {"SHANCHENG_KEY_FILE": str(locked), "SHANCHENG_KEY_PASSWORD_FILE": str(password)}

    async def load() -> str | None:
        async with AsyncExchangeClient.from_env(env) as async_client:
            return async_client.key_id

    assert asyncio.run(load()) == alice.key_id()

    (tmp_path / "empty").write_bytes(b"")
    bad = [
        {"SHANCHENG_KEY_FILE": str(tmp_path / "missing.pem")},
        {"SHANCHENG_KEY_FILE": str(password)},  # not a key
        {"SHANCHENG_KEY_FILE": str(locked)},  # encrypted, no password
        {"SHANCHENG_KEY_FILE": str(locked), "SHANCHENG_KEY_PASSWORD_FILE": str(plain)},
        {"SHANCHENG_KEY_FILE": str(locked), "SHANCHENG_KEY_PASSWORD_FILE": str(tmp_path / "empty")},
        {"SHANCHENG_KEY_PASSWORD_FILE": str(password)},
    ]
    for environ in bad:
        with pytest.raises(ClientConfigError):
            ExchangeClient.from_env(environ)
