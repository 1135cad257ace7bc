"""Helpers shared by the provider-custody tests (no tests of its own): listings in
provider custody, their paid orders, deliverable uploads and the provider's
``delivery.issued`` payloads."""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx
from test_auth_support import Exchange
from test_delivery_support import paid_order, publish_draft, sm3_header, sm3_hex

from ledger.protocol.delivery import DELIVERY_ISSUED
from ledger.sm2 import SM2PrivateKey

ROW_ROOT = "cd" * 32
ROW_COUNT = 1_000_000
DIGEST = "ab" * 32
TIERS = {
    "model": "tiers",
    "tiers": [
        {"up_to_rows": 1000, "price_per_1000_rows": 500},
        {"up_to_rows": None, "price_per_1000_rows": 200},
    ],
}


def provider_listing(ex: Exchange, owner: SM2PrivateKey, **overrides: Any) -> str:
    """A published listing in provider custody (``overrides`` of listing_content)."""
    fields: dict[str, Any] = {
        "custody": "provider",
        "row_root": ROW_ROOT,
        "row_count": ROW_COUNT,
        "content_digest": DIGEST,
    }
    listing_id = ex.draft(owner, **(fields | overrides))
    publish_draft(ex, owner, listing_id)
    return listing_id


def quantity_order(
    ex: Exchange, owner: SM2PrivateKey, buyer: SM2PrivateKey, rows: int = 100, offset: int = 50
) -> tuple[str, str]:
    """(listing id, order id) of a paid order of rows [offset, offset + rows)."""
    listing_id = provider_listing(ex, owner, pricing=TIERS)
    return listing_id, paid_order(ex, buyer, listing_id, rows=rows, row_offset=offset)


def whole_order(ex: Exchange, owner: SM2PrivateKey, buyer: SM2PrivateKey) -> tuple[str, str]:
    listing_id = provider_listing(ex, owner)
    return listing_id, paid_order(ex, buyer, listing_id)


def put_deliverable(
    ex: Exchange, key: SM2PrivateKey, order_id: str, body: bytes | None = None
) -> httpx.Response:
    data = os.urandom(3000) if body is None else body
    return ex.http(key).put(
        f"/orders/{order_id}/deliverable",
        content=data,
        headers={"Content-Type": "application/octet-stream", "Content-Digest": sm3_header(data)},
    )


def delivery_payload(
    ex: Exchange, order_id: str, ciphertext: bytes, **overrides: Any
) -> dict[str, Any]:
    """A payload describing ``ciphertext`` for the order as it is stored."""
    order = ex.http(ex.operator).get(f"/orders/{order_id}").json()
    quantity = order["rows"] is not None
    payload: dict[str, Any] = {
        "order_id": order_id,
        "listing_id": order["listing_id"],
        "version": order["version"],
        "buyer": order["buyer"],
        "format": "csv",
        "rows": {"offset": order["row_offset"], "count": order["rows"]} if quantity else None,
        "range_proof": (
            {"tree_size": ROW_COUNT, "row_root": ROW_ROOT, "proof": ["ee" * 32]}
            if quantity
            else None
        ),
        "plaintext_sm3": "12" * 32 if quantity else order["content_digest"],
        "plaintext_size": len(ciphertext) - 40,
        "ciphertext_sm3": sm3_hex(ciphertext),
        "ciphertext_size": len(ciphertext),
        "wrapped_key": base64.b64encode(b"k" * 120).decode(),
    }
    return payload | overrides


def confirm(
    ex: Exchange,
    key: SM2PrivateKey,
    order_id: str,
    payload: dict[str, Any],
    *,
    signer: SM2PrivateKey | None = None,
) -> httpx.Response:
    return ex.act(
        key, "POST", f"/orders/{order_id}/deliverable", DELIVERY_ISSUED, payload, signer=signer
    )


def deliver(ex: Exchange, owner: SM2PrivateKey, order_id: str) -> bytes:
    """Upload a deliverable and confirm it; its ciphertext."""
    data = os.urandom(5000)
    response = put_deliverable(ex, owner, order_id, data)
    assert response.status_code == 200, response.text
    response = confirm(ex, owner, order_id, delivery_payload(ex, order_id, data))
    assert response.status_code == 201, response.text
    return data
