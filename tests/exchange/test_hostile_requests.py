"""Hostile requests never crash the exchange, never move money and never reach a 500.

* Deeply nested JSON (10^5 and 10^6 levels of ``[``) to every route of the app, on a
  real uvicorn in its own process with py_ecc's recursion limit
  of 100,000 (the C JSON decoder overflowed the stack and killed the process): a 4xx
  ``{code, message}``, and the server still answers ``/health``.
* Duplicate JSON keys and ``NaN`` / ``Infinity``: 400 ``invalid_json`` everywhere; a
  deposit whose body repeats ``amount`` credits nothing.
* Hostile values inside a signed record (a float, an integer beyond 2^53 - 1, a
  400-digit integer, ``schema_version: 1.0``, a lone surrogate) on every endpoint that
  takes one: 400 ``invalid_record``.
* Whatever escapes every handler is a 500 ``{"code": "internal", "message"}``, not
  a plain-text traceback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.routing import iter_route_contexts
from test_auth_support import POSTGRES_URL, Exchange, listing_content, running_exchange

from clients.signing import SM2RequestSigner
from exchange.app import create_app
from exchange.limits import streams_body
from exchange.settings import Settings
from ledger.records import sign_record
from ledger.sm2 import SM2PrivateKey

REPO = Path(__file__).resolve().parents[2]
RAISED_LIMIT_ROUTE = ("POST", "/log/records:batch")  # @body_limit(8 MiB)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    operator: SM2PrivateKey
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> None:
        """The process runs and answers ``/health``."""
        try:
            status = httpx.get(f"{self.url}/health", timeout=10).status_code
        except httpx.TransportError:
            status = None
        if status != 200:
            try:
                code: int | None = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise AssertionError(
                f"the exchange is down (health {status}, exit code {code}):\n"
                + self.log.read_text()[-3000:]
            )

    def send(
        self, client: httpx.Client, method: str, path: str, body: bytes, content_type: str
    ) -> httpx.Response:
        """``client``'s request; a dropped connection is reported as the server's death."""
        try:
            response = client.request(
                method, path, content=body, headers={"content-type": content_type}
            )
        except httpx.TransportError as exc:
            self.alive()
            raise AssertionError(f"{method} {path}: no answer ({exc})") from exc
        self.alive()
        return response

    def http(self, key: SM2PrivateKey | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, auth=SM2RequestSigner(key) if key else None, timeout=60
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app (``create_app()`` configured from SHANCHENG_* variables, as ``shancheng
    serve`` does) on uvicorn in a process of its own: a crash must not take pytest
    down. Importing the app sets py_ecc's recursion limit there (see the test below)."""
    tmp = tmp_path_factory.mktemp("hostile")
    operator = SM2PrivateKey.generate()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHANCHENG_")}
    env.pop("DATABASE_URL", None)
    env.update(
        SHANCHENG_DATA_DIR=str(tmp / "data"),
        SHANCHENG_SEQUENCER_ENABLED="false",
        SHANCHENG_OPERATOR_PUBLIC_KEYS=json.dumps([operator.public_key().to_pem().decode()]),
    )
    log = tmp / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "exchange.app:create_app"),
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = Server(f"http://127.0.0.1:{port}", operator, process, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{running.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_server_runs_with_py_ecc_recursion_limit() -> None:
    """What makes the C decoder's recursion reach the end of the stack: importing
    the app (web3 → py_ecc) raises the limit to 100,000 in the server's process."""
    probe = "import sys, exchange.app; print(sys.getrecursionlimit())"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, check=True, text=True
    )
    assert int(out.stdout.strip()) >= 100_000


@dataclass
class Routes:
    json_body: list[tuple[str, str]]
    """Routes whose operation takes a JSON body (enumerated from the app: new ones
    are walked too), path parameters filled in."""
    other: list[tuple[str, str]]
    """Every other route but HEAD (no body in its answer) and those streaming their
    body (content uploads, never buffered): a JSON body is not theirs to parse."""


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Routes:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("routes")))
    spec = app.openapi()

    def fill(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "0" * 64, path.replace("{version}", "1"))

    json_body = [
        (method.upper(), fill(path))
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    other: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            path = fill(route.path or "")
            scope = {"type": "http", "method": method, "path": path, "app": app}
            if (method, path) not in json_body and not streams_body(scope):
                other.append((method, path))
    assert ("POST", "/participants") in json_body and RAISED_LIMIT_ROUTE in json_body
    assert len(json_body) >= 20 and len(other) >= 20, (json_body, other)
    # every other route reads no body: GETs, and DELETEs (a webhook's removal)
    assert not [route for route in other if route[0] not in ("GET", "DELETE")], other
    return Routes(json_body, other)


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _assert_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    return body


@pytest.mark.parametrize("levels", [10**5, 10**6])
def test_deep_nesting_on_every_json_route_is_refused_and_the_server_survives(
    server: Server, routes: Routes, levels: int
) -> None:
    deep = _nested(levels)
    with server.http() as client:
        for method, path in routes.json_body:
            response = server.send(client, method, path, deep, "application/json")
            body = _assert_error(response, 400, 413)
            assert body["code"] in {"invalid_json", "payload_too_large"}, (method, path, body)
            if len(deep) <= 1 << 20 or (method, path) == RAISED_LIMIT_ROUTE:
                assert body["code"] == "invalid_json", (method, path, body)
        for method, path in routes.other:  # they take no body: any answer but a 5xx
            response = server.send(client, method, path, deep, "application/json")
            assert response.status_code < 500, (method, path, response.text[:300])


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", _nested(10**6)),  # 2 MB: within the batch route's 8 MiB
        ("application/merge-patch+json", _nested(10**5)),
        ("application/json; charset=utf-8", _nested(10**5)),
        ("application/json", _nested(10**5).decode().encode("utf-16-le")),  # json.loads reads it
        ("application/json", b'{"records": ' + _nested(10**5) + b"}"),
    ],
)
def test_deep_nesting_within_a_raised_limit_and_other_spellings(
    server: Server, content_type: str, body: bytes
) -> None:
    method, path = RAISED_LIMIT_ROUTE
    with server.http() as client:
        response = server.send(client, method, path, body, content_type)
    assert _assert_error(response, 400)["code"] == "invalid_json"


def test_deep_brackets_inside_strings_are_not_nesting(server: Server) -> None:
    """Depth is counted outside strings only: a record's text may hold brackets."""
    text = json.dumps({"record": {"record": {"type": "[" * 100_000}, "signature": "]"}})
    with server.http() as client:
        response = client.post(
            "/participants", content=text, headers={"content-type": "application/json"}
        )
    assert _assert_error(response, 400)["code"] == "invalid_record"


def _register(server: Server, role: str = "buyer") -> SM2PrivateKey:
    key = SM2PrivateKey.generate()
    payload = {"display_name": role, "role": role, "public_key": key.public_key().to_pem().decode()}
    body = {"record": sign_record(key, "participant.registered", payload).to_dict()}
    with server.http() as client:
        response = client.post("/participants", json=body)
    assert response.status_code == 201, response.text
    return key


def _available(server: Server, key: SM2PrivateKey) -> int:
    with server.http(key) as client:
        response = client.get("/accounts/me")
    assert response.status_code == 200, response.text
    return int(response.json()["account"]["available"])


def test_a_deposit_repeating_its_amount_is_refused_and_credits_nothing(server: Server) -> None:
    buyer = _register(server)
    target = buyer.key_id()
    payload = {"participant": target, "amount": 3, "reference": "dup-key"}
    record = sign_record(server.operator, "deposit.credited", payload).to_dict()
    text = json.dumps({"record": record})
    assert text.count('"amount": 3') == 1
    hostile = text.replace('"amount": 3', '"amount": 999999, "amount": 3')
    before = _available(server, buyer)
    with server.http(server.operator) as client:
        response = client.post(
            f"/accounts/{target}/deposits",
            content=hostile.encode(),
            headers={"content-type": "application/json"},
        )
        body = _assert_error(response, 400)
        assert body["code"] == "invalid_json" and "amount" in body["message"], body
        assert _available(server, buyer) == before
        # the same record, sent once and well formed, is credited (it was the duplicate)
        response = client.post(
            f"/accounts/{target}/deposits",
            content=text.encode(),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 201, response.text
    assert _available(server, buyer) == before + 3


@pytest.mark.parametrize(
    ("method", "path", "text"),
    [
        ("POST", "/participants", '{"record": {}, "record": {}}'),
        ("POST", "/listings/{listing}/quotes", '{"terms": {}, "terms": {"rows": 5}}'),
        ("POST", "/listings/{listing}/quotes", '{"terms": {"rows": NaN}}'),
        ("POST", "/listings/{listing}/quotes", '{"terms": {"rows": -Infinity}}'),
        ("POST", "/log/records", '{"record": {"a": 1, "a": 2}, "public_key": "x"}'),
        ("POST", "/orders/{order}/delivery", '{"a": 1, "a": 1}'),
        ("POST", "/listings/{listing}/quotes", '{"terms": {"licence": "a\\u0000b"}}'),
    ],
)
def test_duplicate_keys_constants_and_nul_are_refused_everywhere(
    server: Server, method: str, path: str, text: str
) -> None:
    buyer = _register(server)
    path = path.format(listing=uuid.uuid4(), order=uuid.uuid4())
    with server.http(buyer) as client:
        response = client.request(
            method, path, content=text.encode(), headers={"content-type": "application/json"}
        )
    assert _assert_error(response, 400)["code"] == "invalid_json", response.text


def test_malformed_json_is_still_the_frameworks_422(server: Server) -> None:
    with server.http() as client:
        response = client.post(
            "/participants", content=b'{"record": ', headers={"content-type": "application/json"}
        )
    assert _assert_error(response, 422)["code"] == "invalid_request"


# ---------------------------------------------------------------------- hostile record values


HOSTILE_VALUES: dict[str, str] = {
    "float": "1000.0",
    "beyond 2^53-1": str(2**53),
    "below -(2^53-1)": str(-(2**53)),
    "400 digits": "9" * 400,
    "lone surrogate": '"\\ud800"',
    "lone low surrogate": '"a\\udfffb"',
}
"""JSON text of values a signed record must never hold."""

PLACES = ("payload", "schema_version", "timestamp", "nested")


def _hostile_record_text(record: dict[str, Any], place: str, value: str) -> str:
    """The signed record ``record`` as JSON text with ``value`` put at ``place``."""
    marker = "__HOSTILE__"
    signed = json.loads(json.dumps(record))
    inner = signed["record"]
    if place == "payload":
        inner["payload"]["extra"] = marker
    elif place == "nested":
        inner["payload"]["extra"] = {"deep": [1, {"x": marker}]}
    else:
        inner[place] = marker
    return json.dumps(signed).replace(json.dumps(marker), value)


@dataclass
class SignedRoute:
    actor: Callable[[World], SM2PrivateKey]
    record_type: str
    payload: Callable[[World, str], dict[str, Any]]


@dataclass
class World:
    ex: Exchange
    provider: SM2PrivateKey
    buyer: SM2PrivateKey
    listing: str
    published: str
    order: str
    assessor: SM2PrivateKey | None = None


def _listing_payload(w: World, listing_id: str) -> dict[str, Any]:
    return {"listing_id": listing_id, **listing_content(w.provider.key_id())}


def _provider(w: World) -> SM2PrivateKey:
    return w.provider


def _buyer(w: World) -> SM2PrivateKey:
    return w.buyer


def _operator(w: World) -> SM2PrivateKey:
    return w.ex.operator


def _assessor(w: World) -> SM2PrivateKey:
    """An approved assessor (registered on first use)."""
    if w.assessor is None:
        w.assessor = w.ex.register("assessor")
        w.ex.approve(w.assessor)
    return w.assessor


def _target(**extra: Any) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, resource: {"listing_id": w.listing, **extra}


def _on_order(**extra: Any) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, resource: {"order_id": w.order, **extra}


COMPUTATION_ID = str(uuid.uuid4())
REPORT_SM3 = "ab" * 32
CERTIFICATE = "SC-2026-000001"
WITHDRAWAL_ID = str(uuid.uuid4())

SIGNED_ROUTES: dict[tuple[str, str], SignedRoute] = {
    ("POST", "/participants"): SignedRoute(
        _buyer,
        "participant.registered",
        lambda w, _r: {
            "display_name": "x",
            "role": "buyer",
            "public_key": w.buyer.public_key().to_pem().decode(),
        },
    ),
    ("POST", "/participants/{key_id}/approve"): SignedRoute(
        _operator, "participant.approved", lambda w, _r: {"participant": w.provider.key_id()}
    ),
    ("POST", "/participants/{key_id}/suspend"): SignedRoute(
        _operator,
        "participant.suspended",
        lambda w, _r: {"participant": w.provider.key_id(), "reason": "x"},
    ),
    ("POST", "/listings"): SignedRoute(
        _provider, "listing.drafted", lambda w, _r: _listing_payload(w, str(uuid.uuid4()))
    ),
    ("PUT", "/listings/{listing_id}"): SignedRoute(
        _provider, "listing.edited", lambda w, _r: _listing_payload(w, w.listing)
    ),
    ("POST", "/listings/{listing_id}/submit"): SignedRoute(
        _provider, "listing.submitted", _target()
    ),
    ("POST", "/listings/{listing_id}/review"): SignedRoute(
        _operator, "listing.review_started", _target()
    ),
    ("POST", "/listings/{listing_id}/publish"): SignedRoute(
        _operator, "listing.published", _target()
    ),
    ("POST", "/listings/{listing_id}/reject"): SignedRoute(
        _operator, "listing.rejected", _target(reason="x")
    ),
    ("POST", "/listings/{listing_id}/delist"): SignedRoute(
        _provider, "listing.delisted", _target(reason="x")
    ),
    ("POST", "/listings/{listing_id}/versions"): SignedRoute(
        _provider,
        "listing.version_added",
        _target(version=2, content_digest="cd" * 32, row_count=5, byte_size=50, format="csv"),
    ),
    ("POST", "/accounts/{key_id}/deposits"): SignedRoute(
        _operator,
        "deposit.credited",
        lambda w, _r: {"participant": w.buyer.key_id(), "amount": 100, "reference": "x"},
    ),
    ("POST", "/orders"): SignedRoute(
        _buyer,
        "order.placed",
        lambda w, _r: {
            "order_id": str(uuid.uuid4()),
            "quote": {},
            "declaration": {"purpose": "internal_analytics", "processing_region": "CN"},
        },
    ),
    ("POST", "/orders/{order_id}/accept"): SignedRoute(_buyer, "order.accepted", _on_order()),
    ("POST", "/orders/{order_id}/dispute"): SignedRoute(
        _buyer, "order.disputed", _on_order(reason="x")
    ),
    ("POST", "/orders/{order_id}/resolve"): SignedRoute(
        _operator, "dispute.resolved", _on_order(outcome="refund", reason="x")
    ),
    ("POST", "/orders/{order_id}/revoke"): SignedRoute(
        _provider, "access.revoked", _on_order(reason="x")
    ),
    ("POST", "/orders/{order_id}/deliverable"): SignedRoute(
        _provider,
        "delivery.issued",
        _on_order(listing_id=str(uuid.uuid4()), version=1, rows=None, range_proof=None),
    ),
    ("POST", "/crossborder-assessments"): SignedRoute(
        _operator,
        "crossborder.assessed",
        lambda w, _r: {
            "listing_id": w.published,
            "buyer": w.buyer.key_id(),
            "approved": False,
            "reference": "x",
            "valid_until": None,
        },
    ),
    ("POST", "/computations"): SignedRoute(
        _buyer,
        "computation.requested",
        _on_order(computation_id=str(uuid.uuid4()), sql="SELECT COUNT(*) FROM t"),
    ),
    ("POST", "/computations/{computation_id}/outcome"): SignedRoute(
        _provider,
        "computation.refused",
        _on_order(computation_id=COMPUTATION_ID, reason="timeout"),
    ),
    ("POST", "/listings/{listing_id}/quality-reports"): SignedRoute(
        _provider, "quality.reported", _target(version=1, report={}, report_sm3=REPORT_SM3)
    ),
    ("POST", "/listings/{listing_id}/quality-reports/{report_sm3}/countersignatures"): (
        SignedRoute(_assessor, "quality.countersigned", _target(version=1, report_sm3=REPORT_SM3))
    ),
    ("POST", "/certificates/{number}/records"): SignedRoute(
        _provider,
        "certificate.renewal_requested",
        lambda w, _r: {"number": CERTIFICATE, "valid_until": 2**52},
    ),
    ("POST", "/withdrawals"): SignedRoute(
        _buyer,
        "withdrawal.requested",
        lambda w, _r: {"withdrawal_id": str(uuid.uuid4()), "amount": 100, "destination": "x"},
    ),
    ("POST", "/withdrawals/{withdrawal_id}/paid"): SignedRoute(
        _operator,
        "withdrawal.paid",
        lambda w, _r: {"withdrawal_id": WITHDRAWAL_ID, "reference": "x"},
    ),
    ("POST", "/withdrawals/{withdrawal_id}/rejected"): SignedRoute(
        _operator,
        "withdrawal.rejected",
        lambda w, _r: {"withdrawal_id": WITHDRAWAL_ID, "reason": "x"},
    ),
}


def _signed_routes(app: Any) -> set[tuple[str, str]]:
    """Every route whose body is a signed action (``ActionRequest``), from the app."""
    spec = app.openapi()
    found: set[tuple[str, str]] = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            schema = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
            )
            if schema.get("$ref", "").endswith("/ActionRequest"):
                found.add((method.upper(), path))
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[World]:
    if request.param == "postgresql" and POSTGRES_URL is None:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with running_exchange(
        live_server, tmp_path_factory.mktemp("hostile_values"), request.param
    ) as ex:
        provider = ex.provider("owner")
        buyer = ex.register("buyer")
        listing = ex.draft(provider)
        yield World(ex, provider, buyer, listing, ex.published(provider), str(uuid.uuid4()))


def test_every_signed_route_is_in_the_walk(world: World) -> None:
    assert _signed_routes(world.ex.app) == set(SIGNED_ROUTES)


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("place", PLACES)
def test_hostile_values_in_a_signed_record_are_invalid_record(
    world: World, place: str, value: str
) -> None:
    failures = []
    for (method, template), route in SIGNED_ROUTES.items():
        actor = route.actor(world)
        path = template.format(
            key_id=world.provider.key_id() if "participants" in template else world.buyer.key_id(),
            listing_id=world.listing,
            order_id=world.order,
            computation_id=COMPUTATION_ID,
            report_sm3=REPORT_SM3,
            number=CERTIFICATE,
            withdrawal_id=WITHDRAWAL_ID,
        )
        record = sign_record(actor, route.record_type, route.payload(world, path)).to_dict()
        text = '{"record": ' + _hostile_record_text(record, place, HOSTILE_VALUES[value]) + "}"
        client = world.ex.http(None if template == "/participants" else actor)
        response = client.request(
            method, path, content=text.encode(), headers={"content-type": "application/json"}
        )
        body = response.json() if response.headers.get("content-type") == "application/json" else {}
        if response.status_code != 400 or body.get("code") != "invalid_record":
            failures.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
    assert not failures, "\n".join(failures)


def _append_body(record: str, public_key: str) -> str:
    return '{"record": ' + record + ', "public_key": ' + public_key + "}"


def _unsigned_bodies(w: World, value: str) -> dict[tuple[str, str], list[str]]:
    """Per route whose JSON body is not a signed action, texts of it with ``value`` in
    each of its fields."""
    signed = sign_record(w.buyer, "note.added", {"text": "x"}).to_dict()
    pem = json.dumps(w.buyer.public_key().to_pem().decode())
    texts = [_hostile_record_text(signed, place, value) for place in PLACES]
    appends = [_append_body(text, pem) for text in texts] + [
        _append_body(json.dumps(signed), value)
    ]
    return {
        ("POST", "/listings/{listing_id}/quotes"): [
            '{"terms": {"' + field + '": ' + value + "}}"
            for field in ("rows", "periods", "licence")
        ],
        ("POST", "/log/records"): appends,
        ("POST", "/log/records:batch"): ['{"records": [' + text + "]}" for text in appends],
        ("POST", "/orders/{order_id}/delivery"): ['{"x": ' + value + "}"],
        ("POST", "/webhooks"): [
            '{"url": ' + value + "}",
            '{"url": "http://127.0.0.1:9/x", "event_types": [' + value + "]}",
            '{"url": "http://127.0.0.1:9/x", "after": ' + value + "}",
        ],
    }


@pytest.mark.parametrize("value", [*HOSTILE_VALUES, "NUL"])
def test_hostile_values_in_other_json_bodies_are_client_errors(world: World, value: str) -> None:
    text = '"a\\u0000b"' if value == "NUL" else HOSTILE_VALUES[value]
    bodies = _unsigned_bodies(world, text)
    json_routes = {
        (method.upper(), path)
        for path, item in world.ex.app.openapi()["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert json_routes - set(SIGNED_ROUTES) == set(bodies)
    failures = []
    client = world.ex.http(world.buyer)
    for (method, template), texts in bodies.items():
        path = template.format(listing_id=world.published, order_id=world.order)
        for body in texts:
            response = client.request(
                method, path, content=body.encode(), headers={"content-type": "application/json"}
            )
            ok = 400 <= response.status_code < 500 and set(response.json()) == {"code", "message"}
            if not ok:
                failures.append(f"{method} {path} {body[:80]}: {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_nul_in_a_signed_record_is_refused_on_every_backend(world: World) -> None:
    """PostgreSQL text holds no U+0000: a listing titled with one was a 500 there."""
    payload = _listing_payload(world, str(uuid.uuid4())) | {"title": "bus\x00stops"}
    response = world.ex.act(world.provider, "POST", "/listings", "listing.drafted", payload)
    assert _assert_error(response, 400)["code"] == "invalid_json"


# ---------------------------------------------------------------------- the last resort


def test_an_unhandled_exception_is_a_json_500_that_tells_nothing_internal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(data_dir=tmp_path, sequencer_enabled=False))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-detail at /srv/exchange")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    with caplog.at_level("ERROR", logger="exchange.errors"):
        response = anyio.run(call)
    body = _assert_error(response, 500)
    assert body["code"] == "internal"
    assert "secret-detail" not in response.text and "Traceback" not in response.text
    reference = body["message"].split("reference ")[1].split(")")[0]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback stays server-side


# ---------------------------------------------------------------------- hostile URL values


HOSTILE_URL_VALUES = {
    "NUL": "x%00",
    "lone surrogate (CESU-8)": "a%ED%A0%80b",
}
"""Percent-encoded URL values no PostgreSQL text comparison may see: it refuses a
NUL in a parameter (a 500), and a surrogate's bytes are no UTF-8 at all."""

FREE_TEXT_QUERY = {("/listings/search", "q"), ("/listings/search", "category")} | {
    ("/listings/search", "tag")
}
"""Search terms, where any text is a question: NUL separates terms in ``q``
(tests/exchange/test_search.py) and the server decodes undecodable bytes as U+FFFD,
which a category or a tag may be asked for (no listing has one)."""


def _url_walk(
    w: World, value: str
) -> Iterator[tuple[str, str, str, bytes, list[SM2PrivateKey | None]]]:
    """Per route and per path or query parameter of it: (method, URL with ``value`` as
    that parameter, content type, body, who sends it). A signed route gets its record
    from its actor (the path's other parameters name real things); every other route
    is tried anonymously and as each role."""
    fill = {
        "listing_id": w.published,
        "order_id": w.order,
        "key_id": w.buyer.key_id(),
        "version": "1",
        "index": "0",
        "tree_size": "1",
        "number": CERTIFICATE,
        "withdrawal_id": WITHDRAWAL_ID,
    }
    everyone: list[SM2PrivateKey | None] = [w.buyer, w.provider, w.ex.operator]
    for template, item in w.ex.app.openapi()["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            content_type = next(iter(content), "application/json")
            for parameter in operation.get("parameters", []):
                where, name = parameter["in"], parameter["name"]
                if where not in ("path", "query"):
                    continue
                path = template
                for other, filled in fill.items():
                    if where == "query" or other != name:
                        path = path.replace("{" + other + "}", filled)
                if where == "path":
                    path = path.replace("{" + name + "}", value)
                else:
                    path += "?" + name + "=" + value
                signed = SIGNED_ROUTES.get((method.upper(), template))
                if signed is not None:
                    actor = signed.actor(w)
                    payload = signed.payload(w, path)
                    record = sign_record(actor, signed.record_type, payload).to_dict()
                    body = json.dumps({"record": record}).encode()
                    yield method.upper(), path, content_type, body, [actor]
                else:
                    body = b"{}" if content_type == "application/json" else b""
                    yield method.upper(), path, content_type, body, [None, *everyone]


@pytest.mark.parametrize("value", HOSTILE_URL_VALUES)
def test_hostile_path_and_query_values_are_client_errors(world: World, value: str) -> None:
    """``GET /listings/x%00`` and ``GET /orders/x%00`` were 500s on PostgreSQL."""
    failures = []
    walked = 0
    clients: dict[str | None, httpx.Client] = {}
    for method, path, content_type, body, senders in _url_walk(world, HOSTILE_URL_VALUES[value]):
        free_text = (path.split("?")[0], path.split("?")[-1].split("=")[0]) in FREE_TEXT_QUERY
        for sender in senders:
            walked += 1
            name = sender.key_id() if sender else None
            client = clients.setdefault(name, world.ex.http(sender))
            response = client.request(
                method, path, content=body, headers={"content-type": content_type}
            )
            if free_text and response.status_code == 200:
                continue
            is_json = response.headers.get("content-type") == "application/json"
            ok = 400 <= response.status_code < 500 and is_json
            if not ok or set(response.json()) != {"code", "message"}:
                failures.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
    assert walked >= 100, walked
    assert not failures, "\n".join(failures)
