"""Every answer of the log's API parses with the shared class
(:mod:`ledger.protocol.log`, the one the SDK reads), and the class gives back the
very bytes the exchange sent: the shapes are defined once, in wire form."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session
from test_raw_append_support import enrol

from clients.signing import SM2RequestSigner
from exchange.anchoring.models import AnchorRow, AnchorState
from exchange.app import create_app
from exchange.log.sequencer import integrate_pending
from exchange.log.testing import LogDatabase, isolated_database
from exchange.settings import Settings
from ledger.protocol.log import (
    Anchor,
    Appended,
    ConsistencyProof,
    Entry,
    InclusionProof,
    LogKey,
)
from ledger.records import RecordFormatError, SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey


def _same_bytes(response: httpx.Response, parsed: Any) -> None:
    """``parsed``, serialised as the exchange serialises answers, is the answer."""
    assert response.status_code in (200, 201), response.text
    plain = (
        [dataclasses.asdict(item) for item in parsed]
        if isinstance(parsed, list)
        else dataclasses.asdict(parsed)
    )
    assert json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode() == response.content


@pytest.fixture
def log_db(tmp_path: Path) -> Any:
    with isolated_database(None, tmp_path) as db:
        yield db


@pytest.fixture
def actor() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture
def app(log_db: LogDatabase, tmp_path: Path, actor: SM2PrivateKey) -> FastAPI:
    app = create_app(
        Settings(data_dir=tmp_path / "data", database_url=log_db.url, sequencer_enabled=False)
    )
    enrol(app.state.engine, actor)
    return app


def _body(actor: SM2PrivateKey, n: int) -> tuple[SignedRecord, dict[str, Any]]:
    signed = sign_record(actor, "note.added", {"listing": f"l-{n}", "note": "数据 ✓"})
    return signed, {"record": signed.to_dict(), "public_key": actor.public_key().to_pem().decode()}


def test_every_log_answer_is_the_shared_class_byte_for_byte(
    app: FastAPI, log_db: LogDatabase, actor: SM2PrivateKey, live_server: Any
) -> None:
    now = int(time.time())
    with Session(log_db.engine) as session:
        session.add(
            AnchorRow(
                tree_size=2,
                root=bytes(range(32)),
                state=AnchorState.FINAL,
                chain_id=31337,
                registry_address="0x" + "12" * 20,
                tx_hash="0x" + "ab" * 32,
                block_number=101,
                block_hash=None,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    with live_server(app) as url, httpx.Client(base_url=url, auth=SM2RequestSigner(actor)) as http:
        response = http.get("/.well-known/shancheng/log-key")
        log_key = LogKey.from_dict(response.json())
        _same_bytes(response, log_key)
        assert log_key.sm2_public_key == app.state.log_key.public_key()

        first, body = _body(actor, 0)
        response = http.post("/log/records", json=body)
        appended = Appended.from_dict(response.json())
        _same_bytes(response, appended)
        assert appended.leaf_hash_bytes == first.leaf_hash()
        appended.signed_promise.verify(log_key.sm2_public_key)
        integrate_pending(app.state.session_factory, app.state.log_key)

        batch = [_body(actor, n) for n in (1, 2)]
        response = http.post("/log/records:batch", json={"records": [b for _, b in batch]})
        assert response.status_code == 201, response.text
        many = [Appended.from_dict(a) for a in response.json()["appended"]]
        assert [a.leaf_hash_bytes for a in many] == [s.leaf_hash() for s, _ in batch]

        integrate_pending(app.state.session_factory, app.state.log_key)
        root = bytes.fromhex(http.get("/log/checkpoint").json()["root"])
        first_root = bytes.fromhex(http.get("/log/checkpoints/1").json()["root"])

        response = http.get("/log/entries/0")
        entry = Entry.from_dict(response.json())
        _same_bytes(response, entry)
        assert entry.signed_record == first and entry.actor_key == actor.public_key()
        entry.signed_promise.verify(log_key.sm2_public_key)

        response = http.get("/log/proofs/inclusion", params={"index": 2, "tree_size": 3})
        inclusion = InclusionProof.from_dict(response.json())
        _same_bytes(response, inclusion)
        inclusion.verify(root)

        response = http.get("/log/proofs/consistency", params={"first": 1, "second": 3})
        consistency = ConsistencyProof.from_dict(response.json())
        _same_bytes(response, consistency)
        consistency.verify(first_root, root)

        response = http.get("/log/anchors")
        anchors = [Anchor.from_dict(a) for a in response.json()]
        _same_bytes(response, anchors)
        assert anchors[0].root_bytes == bytes(range(32))


@pytest.mark.parametrize(
    ("shape", "answer", "path"),
    [
        (Appended, {"index": 0, "leaf_hash": "AB" * 32, "promise": {}}, "leaf_hash"),
        (InclusionProof, {"index": 0, "tree_size": 1, "leaf_hash": "ab" * 32,
                          "hashes": [1]}, "hashes[0]"),
        (ConsistencyProof, {"first": 1, "second": 2, "hashes": ["ab"] * 65}, "hashes"),
        (LogKey, {"key_id": "ab" * 32, "public_key": "not a key"}, "public_key"),
        (Anchor, {"tree_size": 1, "root": "ab" * 32, "state": "final", "chain_id": 1,
                  "registry_address": "0x", "tx_hash": 7}, "tx_hash"),
    ],
)  # fmt: skip
def test_a_malformed_answer_is_refused_naming_the_field(
    shape: Any, answer: dict[str, Any], path: str
) -> None:
    with pytest.raises(RecordFormatError) as caught:
        shape.from_dict(answer)
    assert caught.value.path == path
