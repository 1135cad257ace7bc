"""Helpers shared by the content-upload and delivery tests (no tests of its own):
datasets with their SM3, listings that commit to them, streamed uploads, paid
orders, and direct order edits for states other endpoints would reach."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session
from test_auth_support import Exchange
from test_orders import deposit, order_body, place, quote

from clients.signing import SM2RequestSigner
from exchange.content import ContentStore, content_store_from_settings
from exchange.orders.models import Order
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3


def dataset(size: int = 200_000) -> bytes:
    """Bytes spanning several 64 KiB ciphertext chunks (and a partial last one)."""
    return os.urandom(size)


def sm3_hex(data: bytes) -> str:
    return sm3(data).hex()


def sm3_header(data: bytes) -> str:
    return f"sm3=:{base64.b64encode(sm3(data)).decode()}:"


def sha256_header(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def content_path(listing_id: str, version: int = 1) -> str:
    return f"/listings/{listing_id}/versions/{version}/content"


def listing_for(ex: Exchange, owner: SM2PrivateKey, data: bytes, **overrides: Any) -> str:
    """A draft that commits to ``data`` (its SM3 and size)."""
    return ex.draft(owner, content_digest=sm3_hex(data), byte_size=len(data), **overrides)


def publish_draft(ex: Exchange, owner: SM2PrivateKey, listing_id: str) -> None:
    for key, action in ((owner, "submit"), (ex.operator, "review"), (ex.operator, "publish")):
        response = ex.step(key, listing_id, action)
        assert response.status_code == 200, response.text


def upload(
    ex: Exchange,
    key: SM2PrivateKey | None,
    listing_id: str,
    body: bytes | Iterable[bytes],
    *,
    version: int = 1,
    content_digest: str | None = None,
    signer: SM2RequestSigner | None = None,
) -> httpx.Response:
    """PUT the content. Bytes are signed with their own Content-Digest unless
    ``content_digest`` is given; an iterable is streamed (chunked) and needs one."""
    headers = {"Content-Type": "application/octet-stream"}
    if content_digest is not None:
        headers["Content-Digest"] = content_digest
    client = ex.http(key) if signer is None else ex.http()
    return client.put(
        content_path(listing_id, version),
        content=body,
        headers=headers,
        auth=signer if signer is not None else httpx.USE_CLIENT_DEFAULT,
        timeout=120,
    )


def store_of(ex: Exchange) -> ContentStore:
    """A store on the exchange's content directory (the same files and master key)."""
    return content_store_from_settings(ex.app.state.settings)


def temporary_entries(store: ContentStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


def ready_listing(ex: Exchange, owner: SM2PrivateKey, data: bytes, **overrides: Any) -> str:
    """A published listing whose content ``data`` is uploaded."""
    listing_id = listing_for(ex, owner, data, **overrides)
    response = upload(ex, owner, listing_id, data)
    assert response.status_code == 201, response.text
    publish_draft(ex, owner, listing_id)
    return listing_id


def paid_order(ex: Exchange, buyer: SM2PrivateKey, listing_id: str, **terms: Any) -> str:
    """An order of ``buyer`` on ``listing_id``, funded and placed."""
    q = quote(ex, buyer, listing_id, **terms)
    assert deposit(ex, buyer, q["amount"]).status_code == 201
    order_id = str(uuid.uuid4())
    response = place(ex, buyer, order_body(buyer, q, order_id))
    assert response.status_code == 201, response.text
    return order_id


def order_row(ex: Exchange, order_id: str) -> Order:
    session: Session
    with ex.app.state.session_factory() as session:
        row = session.get(Order, order_id)
        assert row is not None
        session.expunge(row)
        return row


def set_order(ex: Exchange, order_id: str, **values: Any) -> None:
    """Change an order's columns directly (states other engineers' endpoints reach)."""
    with ex.app.state.session_factory() as session:
        row = session.get(Order, order_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        session.add(row)
        session.commit()
