"""The log's REST API over a real uvicorn: append, checkpoints, entries, proofs
(verified with ledger.merkle), anchors, the in-app sequencer, and every error case.

Appends are the raw append's: ``note.*`` records by an enrolled participant, in
signed requests, with the rate limit raised out of the way (its own tests are in
test_log_raw_append.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlmodel import Session
from test_raw_append_support import enrol

from clients.signing import SM2RequestSigner
from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.app import create_app
from exchange.log.models import PromiseBatchRow
from exchange.log.sequencer import integrate_pending
from exchange.log.testing import LogDatabase, isolated_database
from exchange.settings import Settings
from ledger.checkpoint import Checkpoint, Promise
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogDatabase]:
    if request.param == "postgresql" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with isolated_database(POSTGRES_URL if request.param == "postgresql" else None, tmp_path) as db:
        yield db


@pytest.fixture(scope="module")
def actor() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture
def app(log_db: LogDatabase, tmp_path: Path, actor: SM2PrivateKey) -> FastAPI:
    app = create_app(
        Settings(
            data_dir=tmp_path / "data",
            database_url=log_db.url,
            sequencer_enabled=False,
            raw_append_rate_per_s=1_000_000,  # out of the way of the concurrency test
            raw_append_burst=1_000_000,
        )
    )
    enrol(app.state.engine, actor)
    return app


def _client(url: str, actor: SM2PrivateKey, **kw: Any) -> httpx.Client:
    """A client whose requests ``actor`` signs (reads need no signature, and get one)."""
    return httpx.Client(base_url=url, auth=SM2RequestSigner(actor), **kw)


def _body(actor: SM2PrivateKey, n: int, **payload: Any) -> dict[str, Any]:
    signed = sign_record(actor, "note.added", {"listing": f"l-{n}", **payload})
    return {"record": signed.to_dict(), "public_key": actor.public_key().to_pem().decode()}


def _integrate(app: FastAPI) -> None:
    integrate_pending(app.state.session_factory, app.state.log_key)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message"}
    return str(body["message"])


def test_append_integrate_and_verify_everything_over_http(
    app: FastAPI, actor: SM2PrivateKey, live_server: Any
) -> None:
    with live_server(app) as url, _client(url, actor) as http:
        log_key = SM2PublicKey.from_pem(
            http.get("/.well-known/shancheng/log-key").json()["public_key"]
        )
        _error(http.get("/log/checkpoint"), 404, "no_checkpoint")
        _error(http.get("/log/entries/0"), 404, "entry_not_found")  # not integrated

        bodies = [_body(actor, n) for n in range(5)]
        leaves: list[bytes] = []
        for n, body in enumerate(bodies[:3]):
            response = http.post("/log/records", json=body)
            assert response.status_code == 201, response.text
            answer = response.json()
            promise = Promise.from_dict(answer["promise"])
            promise.verify(log_key)
            assert answer["index"] == promise.index == n
            assert answer["leaf_hash"] == promise.leaf_hash.hex()
            assert promise.leaf_hash == SignedRecord.from_dict(body["record"]).leaf_hash()
            leaves.append(promise.leaf_hash)
        batch = http.post("/log/records:batch", json={"records": bodies[3:]})
        assert batch.status_code == 201, batch.text
        appended = batch.json()["appended"]
        assert [a["index"] for a in appended] == [3, 4]
        for a in appended:
            Promise.from_dict(a["promise"]).verify(log_key)
            leaves.append(bytes.fromhex(a["leaf_hash"]))

        _integrate(app)
        latest = Checkpoint.from_dict(http.get("/log/checkpoint").json())
        latest.verify(log_key)
        assert latest.tree_size == 5
        assert Checkpoint.from_dict(http.get("/log/checkpoints/5").json()) == latest

        for index in range(5):
            entry = http.get(f"/log/entries/{index}").json()
            signed = SignedRecord.from_dict(entry["record"])
            signed.verify(SM2PublicKey.from_pem(entry["public_key"]))
            assert entry["index"] == index
            assert entry["leaf_hash"] == signed.leaf_hash().hex() == leaves[index].hex()
            Promise.from_dict(entry["promise"]).verify(log_key)
            assert entry["record"] == bodies[index]["record"]

            proof = http.get("/log/proofs/inclusion", params={"index": index, "tree_size": 5})
            body = proof.json()
            assert body["index"] == index and body["tree_size"] == 5
            assert body["leaf_hash"] == leaves[index].hex()
            hashes = [bytes.fromhex(h) for h in body["hashes"]]
            verify_inclusion(leaves[index], index, 5, hashes, latest.root)

            by_hash = http.get(
                "/log/proofs/inclusion", params={"leaf_hash": leaves[index].hex()}
            ).json()
            assert by_hash == body  # tree_size defaults to the latest checkpoint

        # A later checkpoint is consistent with the earlier one.
        for n in range(5, 8):
            assert http.post("/log/records", json=_body(actor, n)).status_code == 201
        _integrate(app)
        later = Checkpoint.from_dict(http.get("/log/checkpoint").json())
        assert later.tree_size == 8
        consistency = http.get("/log/proofs/consistency", params={"first": 5, "second": 8})
        body = consistency.json()
        assert (body["first"], body["second"]) == (5, 8)
        hashes = [bytes.fromhex(h) for h in body["hashes"]]
        verify_consistency(5, 8, latest.root, later.root, hashes)
        same = http.get("/log/proofs/consistency", params={"first": 8, "second": 8}).json()
        assert same["hashes"] == []


def test_bad_appends_are_refused_with_clear_codes(
    app: FastAPI, actor: SM2PrivateKey, live_server: Any
) -> None:
    good = _body(actor, 1)
    tampered = _body(actor, 2)
    tampered["record"]["record"]["payload"]["listing"] = "l-999"
    other_key = {
        **_body(actor, 3),
        "public_key": SM2PrivateKey.generate().public_key().to_pem().decode(),
    }
    no_signature = _body(actor, 4)
    del no_signature["record"]["signature"]
    float_payload = _body(actor, 5)
    float_payload["record"]["record"]["payload"]["price"] = 1.5
    with live_server(app) as url, _client(url, actor) as http:
        assert http.post("/log/records", json=good).status_code == 201
        message = _error(http.post("/log/records", json=good), 409, "duplicate_record")
        assert "index 0" in message
        _error(http.post("/log/records", json=tampered), 400, "invalid_signature")
        _error(http.post("/log/records", json=other_key), 400, "actor_mismatch")
        assert "signature" in _error(
            http.post("/log/records", json=no_signature), 400, "invalid_record"
        )
        assert "float" in _error(
            http.post("/log/records", json=float_payload), 400, "invalid_record"
        )
        _error(
            http.post("/log/records", json={**good, "public_key": "not a key"}),
            400,
            "invalid_public_key",
        )
        _error(
            http.post(
                "/log/records", content=b"{not json", headers={"content-type": "application/json"}
            ),
            422,
            "invalid_request",
        )
        _error(http.post("/log/records", json={"record": good["record"]}), 422, "invalid_request")
        _error(http.post("/log/records", json=[1, 2]), 422, "invalid_request")
        _error(http.post("/log/records:batch", json={"records": []}), 422, "invalid_request")
        batch = {"records": [_body(actor, 10), tampered]}
        assert _error(
            http.post("/log/records:batch", json=batch), 400, "invalid_signature"
        ).startswith("records[1]:")
        batch = {"records": [_body(actor, 12), _body(actor, 13), no_signature]}
        assert _error(
            http.post("/log/records:batch", json=batch), 400, "invalid_record"
        ).startswith("records[2]: malformed record")
        twice = _body(actor, 14)
        assert "records[1] repeats records[0]" in _error(
            http.post("/log/records:batch", json={"records": [twice, twice]}),
            409,
            "duplicate_record",
        )
        assert "index 0" in _error(
            http.post("/log/records:batch", json={"records": [_body(actor, 15), good]}),
            409,
            "duplicate_record",
        )
        # Nothing of the refused batch was stored: the next index is 1.
        assert http.post("/log/records", json=_body(actor, 11)).json()["index"] == 1


def test_concurrent_http_appends_are_group_committed(
    app: FastAPI, log_db: LogDatabase, actor: SM2PrivateKey, live_server: Any
) -> None:
    """8 client threads append at once over HTTP: every index once, no gaps, every
    promise verifies, and the log signed fewer promise batches than records."""
    threads, per_thread = 8, 30
    bodies = [[_body(actor, t * 1000 + n) for n in range(per_thread)] for t in range(threads)]

    with live_server(app) as url:
        log_key = SM2PublicKey.from_pem(
            httpx.get(f"{url}/.well-known/shancheng/log-key").json()["public_key"]
        )

        def client(mine: list[dict[str, Any]]) -> list[dict[str, Any]]:
            answers = []
            with _client(url, actor, timeout=60) as http:
                for body in mine:
                    response = http.post("/log/records", json=body)
                    assert response.status_code == 201, response.text
                    answers.append(response.json())
            return answers

        with ThreadPoolExecutor(threads) as pool:
            answers = [a for done in pool.map(client, bodies) for a in done]
        assert app.state.appender.stats.records == threads * per_thread

    total = threads * per_thread
    assert sorted(a["index"] for a in answers) == list(range(total))
    sent = {SignedRecord.from_dict(b["record"]).leaf_hash() for mine in bodies for b in mine}
    for answer in answers:
        promise = Promise.from_dict(answer["promise"])
        promise.verify(log_key)
        assert promise.index == answer["index"] and promise.leaf_hash.hex() == answer["leaf_hash"]
        assert promise.leaf_hash in sent
    with Session(log_db.engine) as session:
        batches = session.execute(select(func.count()).select_from(PromiseBatchRow)).scalar_one()
        largest = session.execute(select(func.max(PromiseBatchRow.size))).scalar_one()
    assert batches < total, "no two appends were ever committed together"
    assert largest > 1
    assert len({a["promise"]["signature"] for a in answers}) == batches


def test_a_stopping_server_refuses_appends_with_503(
    app: FastAPI, actor: SM2PrivateKey, live_server: Any
) -> None:
    with live_server(app) as url, _client(url, actor) as http:
        assert http.post("/log/records", json=_body(actor, 1)).status_code == 201
        app.state.appender.stop()  # what the lifespan does when the server stops
        assert "shutting" in _error(
            http.post("/log/records", json=_body(actor, 2)), 503, "shutting_down"
        )
        _error(
            http.post("/log/records:batch", json={"records": [_body(actor, 3)]}),
            503,
            "shutting_down",
        )
        assert http.get("/log/anchors").status_code == 200  # reads go on


def test_reads_validate_their_parameters(
    app: FastAPI, actor: SM2PrivateKey, live_server: Any
) -> None:
    with live_server(app) as url, _client(url, actor) as http:
        for n in range(4):
            http.post("/log/records", json=_body(actor, n))
        _integrate(app)
        http.post("/log/records", json=_body(actor, 99))  # accepted, not integrated
        proofs = "/log/proofs/inclusion"
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            ("/log/entries/-1", {}, 400, "invalid_index"),
            ("/log/entries/4", {}, 404, "entry_not_found"),
            ("/log/entries/12345678901234567890", {}, 404, "entry_not_found"),
            ("/log/entries/abc", {}, 422, "invalid_request"),
            ("/log/checkpoints/3", {}, 404, "checkpoint_not_found"),
            ("/log/checkpoints/0", {}, 404, "checkpoint_not_found"),
            (proofs, {"index": 0, "tree_size": 0}, 400, "invalid_tree_size"),
            (proofs, {"index": 0, "tree_size": 5}, 400, "invalid_tree_size"),
            (proofs, {"index": 3, "tree_size": 3}, 400, "invalid_index"),
            (proofs, {"index": -1, "tree_size": 3}, 400, "invalid_index"),
            (proofs, {"tree_size": 3}, 400, "invalid_index"),
            (proofs, {"index": 0, "leaf_hash": "00" * 32}, 400, "invalid_index"),
            (proofs, {"leaf_hash": "zz"}, 400, "invalid_index"),
            (proofs, {"leaf_hash": "ab" * 32}, 404, "entry_not_found"),
            (proofs, {"index": "x"}, 422, "invalid_request"),
            ("/log/proofs/consistency", {"first": 3, "second": 2}, 400, "invalid_range"),
            ("/log/proofs/consistency", {"first": 0, "second": 2}, 400, "invalid_tree_size"),
            ("/log/proofs/consistency", {"first": 2, "second": 5}, 400, "invalid_tree_size"),
            ("/log/proofs/consistency", {"first": 2}, 422, "invalid_request"),
            ("/log/anchors", {"limit": 0}, 422, "invalid_request"),
            ("/log/checkpoints/-4", {}, 404, "checkpoint_not_found"),
            ("/log/checkpoints/99999999999999999999", {}, 404, "checkpoint_not_found"),
            (proofs, {"index": 2**70, "tree_size": 3}, 400, "invalid_index"),
            (proofs, {"index": 0, "tree_size": 2**70}, 400, "invalid_tree_size"),
            ("/log/proofs/consistency", {"first": 1, "second": 2**70}, 400, "invalid_tree_size"),
            ("/log/anchors", {"start": 2**70}, 422, "invalid_request"),
            ("/receipts/-1", {}, 404, "entry_not_found"),
            ("/receipts/99999999999999999999", {}, 404, "entry_not_found"),
        ]
        for path, params, status, code in cases:
            _error(http.get(path, params=params), status, code)
        # The accepted but not integrated entry is not served, and has no proof yet.
        pending = http.post("/log/records", json=_body(actor, 100)).json()
        _error(http.get(f"/log/entries/{pending['index']}"), 404, "entry_not_found")
        _error(
            http.get(proofs, params={"leaf_hash": pending["leaf_hash"], "tree_size": 4}),
            404,
            "entry_not_found",
        )


def test_anchors_are_listed_in_tree_size_order(
    app: FastAPI, log_db: LogDatabase, live_server: Any
) -> None:
    now = int(time.time())
    rows = [
        AnchorRow(
            tree_size=size,
            root=bytes([size]) * 32,
            state=state,
            chain_id=31337,
            registry_address="0x" + "12" * 20,
            tx_hash=None if state == AnchorState.PENDING else "0x" + f"{size:02x}" * 32,
            block_number=None if state == AnchorState.PENDING else 100 + size,
            block_hash=None,
            created_at=now,
            updated_at=now,
        )
        for size, state in [
            (9, AnchorState.PENDING),
            (4, AnchorState.FINAL),
            (7, AnchorState.ANCHORED),
        ]
    ]
    with Session(log_db.engine) as session:
        session.add_all(rows)
        session.commit()
    with live_server(app) as url:
        listed = httpx.get(f"{url}/log/anchors").json()
        later = httpx.get(f"{url}/log/anchors", params={"start": 5, "limit": 1}).json()
    assert [a["tree_size"] for a in listed] == [4, 7, 9]
    assert [a["state"] for a in listed] == ["final", "anchored", "pending"]
    assert listed[0] == {
        "tree_size": 4,
        "root": "04" * 32,
        "state": "final",
        "chain_id": 31337,
        "registry_address": "0x" + "12" * 20,
        "tx_hash": "0x" + "04" * 32,
        "block_number": 104,
        "block_hash": None,
    }
    assert [a["tree_size"] for a in later] == [7]


def test_the_in_app_sequencer_publishes_checkpoints(
    log_db: LogDatabase, tmp_path: Path, actor: SM2PrivateKey, live_server: Any
) -> None:
    app = create_app(
        Settings(data_dir=tmp_path / "data", database_url=log_db.url, sequencer_interval=0.05)
    )
    enrol(app.state.engine, actor)
    with live_server(app) as url, _client(url, actor) as http:
        for n in range(3):
            assert http.post("/log/records", json=_body(actor, n)).status_code == 201
        deadline = time.monotonic() + 60
        while True:
            response = http.get("/log/checkpoint")
            if response.status_code == 200 and response.json()["tree_size"] == 3:
                break
            assert time.monotonic() < deadline, "the sequencer never integrated"
            time.sleep(0.05)
        assert app.state.sequencer is not None
    assert app.state.sequencer._thread is None  # stopped with the app


def test_the_openapi_document_describes_the_log(app: FastAPI, live_server: Any) -> None:
    with live_server(app) as url:
        spec = httpx.get(f"{url}/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/.well-known/shancheng/log-key",
        "/log/records",
        "/log/records:batch",
        "/log/checkpoint",
        "/log/checkpoints/{tree_size}",
        "/log/entries/{index}",
        "/log/proofs/inclusion",
        "/log/proofs/consistency",
        "/log/anchors",
        "/receipts/{index}",
    ]:
        assert path in paths, path
        for operation in paths[path].values():
            assert operation["summary"] and operation["tags"]
    append = paths["/log/records"]["post"]
    assert {"201", "400", "409", "422", "503"} <= set(append["responses"])
    assert "shutting_down" in append["responses"]["503"]["description"]
    promise = spec["components"]["schemas"]["PromiseBody"]["properties"]
    assert {"batch_first_index", "batch_size", "batch_proof"} <= set(promise)
    assert "invalid_signature" in append["responses"]["400"]["description"]
    assert "409" in paths["/receipts/{index}"]["get"]["responses"]
    assert {t["name"] for t in spec["tags"]} >= {"log", "receipts"}
