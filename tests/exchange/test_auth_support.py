"""Helpers shared by the auth, participants, listings and authz-matrix tests (no
tests of its own): an exchange on a real uvicorn with one configured operator,
participants that sign their requests (RFC 9421 sm2-sm3) and their records."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from clients.signing import SM2RequestSigner
from exchange.app import create_app
from exchange.log.sequencer import integrate_pending
from exchange.log.testing import isolated_database
from exchange.settings import Settings
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")

DIGEST = "ab" * 32


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    return str(body["message"])


PROVIDER_CUSTODY: dict[str, Any] = {"custody": "provider", "row_root": "cd" * 32}
"""Overrides of :func:`listing_content` for a listing in provider custody (quantity
pricing needs it)."""


def listing_content(owner: str, **overrides: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "title": "重庆公交客流 2025",
        "description": "Hourly boardings per stop.",
        "category": "transport",
        "tags": ["bus", "chongqing"],
        "providers": [{"key_id": owner, "share_bps": 10_000}],
        "columns": [{"name": "stop", "type": "string"}, {"name": "boardings", "type": "integer"}],
        "sample_rows": [{"stop": "解放碑", "boardings": 1200}],
        "row_count": 1_000_000,
        "byte_size": 52_000_000,
        "content_digest": DIGEST,
        "format": "csv",
        "update_frequency": "monthly",
        "licence": "Shancheng standard data licence v1",
        "usage_terms": "No re-identification.",
        "pricing": {"model": "fixed", "price": 19_900},
        "custody": "exchange",
        "declarations": {
            "classification": "一般",
            "personal_information": False,
            "source_legality": "Collected by the operator under contract 2025-17.",
            "permitted_purposes": ["research", "planning"],
        },
    }
    content.update(overrides)
    return content


@dataclass
class Exchange:
    """A running exchange and a way to talk to it as anyone."""

    app: FastAPI
    url: str
    operator: SM2PrivateKey
    clients: list[httpx.Client] = field(default_factory=list)

    def http(self, key: SM2PrivateKey | None = None) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url, auth=SM2RequestSigner(key) if key is not None else None
        )
        self.clients.append(client)
        return client

    def signed_body(
        self, key: SM2PrivateKey, record_type: str, payload: dict[str, Any], **kw: Any
    ) -> dict[str, Any]:
        return {"record": sign_record(key, record_type, payload, **kw).to_dict()}

    def act(
        self,
        key: SM2PrivateKey,
        method: str,
        path: str,
        record_type: str,
        payload: dict[str, Any],
        *,
        signer: SM2PrivateKey | None = None,
    ) -> httpx.Response:
        """``key`` signs the request, ``signer`` (default ``key``) the record."""
        body = self.signed_body(signer or key, record_type, payload)
        return self.http(key).request(method, path, json=body)

    def register(
        self, role: str, name: str = "someone", key: SM2PrivateKey | None = None
    ) -> SM2PrivateKey:
        key = key or SM2PrivateKey.generate()
        payload = {
            "display_name": name,
            "role": role,
            "public_key": key.public_key().to_pem().decode(),
        }
        response = self.http().post(
            "/participants", json=self.signed_body(key, "participant.registered", payload)
        )
        assert response.status_code == 201, response.text
        return key

    def approve(self, key: SM2PrivateKey) -> None:
        response = self.act(
            self.operator,
            "POST",
            f"/participants/{key.key_id()}/approve",
            "participant.approved",
            {"participant": key.key_id()},
        )
        assert response.status_code == 200, response.text

    def provider(self, name: str = "provider") -> SM2PrivateKey:
        key = self.register("provider", name)
        self.approve(key)
        return key

    def draft(self, owner: SM2PrivateKey, **overrides: Any) -> str:
        listing_id = str(uuid.uuid4())
        payload = {"listing_id": listing_id, **listing_content(owner.key_id(), **overrides)}
        response = self.act(owner, "POST", "/listings", "listing.drafted", payload)
        assert response.status_code == 201, response.text
        return listing_id

    def step(
        self, key: SM2PrivateKey, listing_id: str, action: str, **extra: Any
    ) -> httpx.Response:
        record_type = {
            "submit": "listing.submitted",
            "review": "listing.review_started",
            "publish": "listing.published",
            "reject": "listing.rejected",
            "delist": "listing.delisted",
        }[action]
        return self.act(
            key,
            "POST",
            f"/listings/{listing_id}/{action}",
            record_type,
            {"listing_id": listing_id, **extra},
        )

    def published(self, owner: SM2PrivateKey) -> str:
        listing_id = self.draft(owner)
        for key, action in (
            (owner, "submit"),
            (self.operator, "review"),
            (self.operator, "publish"),
        ):
            response = self.step(key, listing_id, action)
            assert response.status_code == 200, response.text
        return listing_id

    def entry(self, index: int) -> dict[str, Any]:
        integrate_pending(self.app.state.session_factory, self.app.state.log_key)
        response = self.http().get(f"/log/entries/{index}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def log_size(self) -> int:
        from sqlalchemy import func, select

        from exchange.log.models import log_entry_table

        with self.app.state.session_factory() as session:
            count = session.execute(select(func.count()).select_from(log_entry_table)).scalar_one()
        return int(count)

    def assert_logged(self, response: httpx.Response, key: SM2PrivateKey, record_type: str) -> None:
        """The response's log entry holds the record the client signed, by ``key``."""
        log = response.json()["log"]
        stored = self.entry(log["index"])
        assert stored["leaf_hash"] == log["leaf_hash"]
        signed = SignedRecord.from_dict(stored["record"])
        assert signed.record.type == record_type
        assert signed.record.actor == key.key_id()
        signed.verify(key.public_key())


@contextmanager
def running_exchange(
    live_server: Any,
    tmp_path: Path,
    backend: str = "sqlite",
    other_operators: tuple[SM2PrivateKey, ...] = (),
    **settings: Any,
) -> Iterator[Exchange]:
    """The exchange's operator is ``Exchange.operator``; ``other_operators`` are
    configured as operators too."""
    operator = SM2PrivateKey.generate()
    postgres = POSTGRES_URL if backend == "postgresql" else None
    with isolated_database(postgres, tmp_path) as db:
        app = create_app(
            Settings(
                data_dir=tmp_path / "data",
                database_url=db.url,
                sequencer_enabled=False,
                operator_public_keys=[
                    key.public_key().to_pem().decode() for key in (operator, *other_operators)
                ],
                **settings,
            )
        )
        with live_server(app) as url:
            exchange = Exchange(app=app, url=url, operator=operator)
            try:
                yield exchange
            finally:
                for client in exchange.clients:
                    client.close()
