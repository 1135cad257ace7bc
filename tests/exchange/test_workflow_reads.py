"""The reads that follow a participant's work: ``GET /orders/{id}/records`` (each
record of an order with its log index and anchor state), ``GET /operator/queue``
(listings awaiting review, providers awaiting approval) and a pending receipt's
``retry_after`` / ``Retry-After``; hostile parameters are refused with
``{code, message}`` (who may read what is in test_authz_matrix)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_auth_support import Exchange, error, running_exchange
from test_orders import BACKENDS, deposit, order_body, place, publish, quote
from test_receipts import _anchor, _fill

from exchange.anchoring.models import AnchorState
from exchange.app import create_app
from exchange.log.sequencer import integrate_pending
from exchange.log.testing import LogDatabase, isolated_database
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(params=BACKENDS)
def ex(request: pytest.FixtureRequest, live_server: Any, tmp_path: Path) -> Iterator[Exchange]:
    with running_exchange(live_server, tmp_path, request.param) as exchange:
        yield exchange


def _order(ex: Exchange, buyer: SM2PrivateKey, listing_id: str) -> str:
    q = quote(ex, buyer, listing_id)
    deposit(ex, buyer, q["amount"])
    response = place(ex, buyer, order_body(buyer, q))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order"]["id"]
    return order_id


def _records(ex: Exchange, key: SM2PrivateKey, order_id: str) -> list[dict[str, Any]]:
    response = ex.http(key).get(f"/orders/{order_id}/records")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order_id"] == order_id
    items: list[dict[str, Any]] = body["items"]
    return items


def _anchor_size(ex: Exchange, state: AnchorState) -> int:
    """Integrate the log and record an anchor of its latest checkpoint in ``state``."""
    from exchange.log.queries import latest_tree_size

    integrate_pending(ex.app.state.session_factory, ex.app.state.log_key)
    with ex.app.state.session_factory() as session:
        size = latest_tree_size(session)
    _anchor(ex.app, size, state)
    return size


def test_an_orders_records_in_log_order_with_their_anchor_state(ex: Exchange) -> None:
    owner = ex.provider()
    listing_id = publish(ex, owner)
    buyer = ex.register("buyer")
    other_buyer = ex.register("buyer", "other")
    order_id = _order(ex, buyer, listing_id)
    _order(ex, other_buyer, listing_id)  # another order's records are not this one's

    [placed] = _records(ex, buyer, order_id)
    assert placed["type"] == "order.placed" and placed["actor"] == buyer.key_id()
    assert placed["anchor"] == {
        "state": "pending",
        "tree_size": None,
        "chain_id": None,
        "tx_hash": None,
        "block_number": None,
    }
    entry = ex.entry(placed["index"])
    assert entry["leaf_hash"] == placed["leaf_hash"]

    first_anchor = _anchor_size(ex, AnchorState.ANCHORED)
    revoked = ex.act(
        owner,
        "POST",
        f"/orders/{order_id}/revoke",
        "access.revoked",
        {"order_id": order_id, "reason": "licence withdrawn"},
    )
    assert revoked.status_code == 200, revoked.text

    records = _records(ex, owner, order_id)  # the listing's provider reads them too
    assert [r["type"] for r in records] == ["order.placed", "access.revoked"]
    assert records[0]["index"] < records[1]["index"]
    assert records[1]["actor"] == owner.key_id()
    assert records[0]["anchor"]["state"] == "anchored"
    assert records[0]["anchor"]["tree_size"] == first_anchor
    assert records[0]["anchor"]["block_number"] == 7
    assert records[1]["anchor"]["state"] == "pending"  # after the anchor: not covered

    _anchor_size(ex, AnchorState.FINAL)
    states = [r["anchor"]["state"] for r in _records(ex, ex.operator, order_id)]
    assert states == ["anchored", "final"]  # each the earliest anchor covering it


@pytest.mark.parametrize(
    ("desc", "path", "status", "code"),
    [
        ("not a UUID", "/orders/not-an-order/records", 422, "invalid_request"),
        ("upper case", "/orders/0000000A-0000-4000-8000-000000000000/records", 422, None),
        ("NUL", "/orders/%00/records", 422, "invalid_request"),
        ("no such order", "/orders/00000000-0000-4000-8000-000000000000/records", 404, None),
    ],
)
def test_order_records_hostile_ids(
    ex: Exchange, desc: str, path: str, status: int, code: str | None
) -> None:
    buyer = ex.register("buyer")
    before = ex.log_size()
    response = ex.http(buyer).get(path)
    assert response.status_code == status, (desc, response.text)
    body = response.json()
    assert set(body) == {"code", "message"}, desc
    if code is not None:
        assert body["code"] == code, desc
    assert ex.log_size() == before


def test_the_operator_queue(ex: Exchange) -> None:
    waiting = ex.register("provider", "等待批准")
    ex.register("buyer", "buyers are never in it")
    owner = ex.provider()
    first = ex.draft(owner)
    second = ex.draft(owner)
    ex.draft(owner)  # a draft waits for its provider, not for an operator
    rejected = ex.draft(owner)
    for listing_id in (rejected, first, second):
        assert ex.step(owner, listing_id, "submit").status_code == 200
    for step in ("review", "reject"):
        extra = {"reason": "no"} if step == "reject" else {}
        assert ex.step(ex.operator, rejected, step, **extra).status_code == 200
    assert ex.step(ex.operator, second, "review").status_code == 200
    publish(ex, owner)  # published: done

    queue = ex.http(ex.operator).get("/operator/queue").json()
    assert [(item["id"], item["state"]) for item in queue["listings"]] == [
        (first, "submitted"),  # longest waiting first
        (second, "under_review"),
    ]
    assert [p["key_id"] for p in queue["participants"]] == [waiting.key_id()]
    assert queue["participants"][0]["status"] == "unverified"
    assert queue["more_listings"] is False and queue["more_participants"] is False

    one = ex.http(ex.operator).get("/operator/queue", params={"limit": 1}).json()
    assert [item["id"] for item in one["listings"]] == [first] and one["more_listings"] is True
    assert one["more_participants"] is False

    for bad in ("0", "201", "x", "1.5"):
        response = ex.http(ex.operator).get("/operator/queue", params={"limit": bad})
        error(response, 422, "invalid_request")


@pytest.fixture
def pending_app(tmp_path: Path) -> Iterator[Any]:
    with isolated_database(None, tmp_path) as db:
        assert isinstance(db, LogDatabase)
        yield create_app(
            Settings(
                data_dir=tmp_path / "data",
                database_url=db.url,
                sequencer_enabled=False,
                anchor_interval_s=60,
            )
        )


def test_a_pending_receipt_says_when_to_ask_again(pending_app: Any, live_server: Any) -> None:
    _fill(pending_app, 6, max_batch=2)  # checkpoints 2, 4, 6
    with live_server(pending_app) as url:
        # nothing anchored yet: the next anchor is an interval away at most
        response = httpx.get(f"{url}/receipts/0")
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "receipt_pending" and isinstance(body["retry_after"], int)
        assert response.headers["Retry-After"] == str(body["retry_after"])
        assert 1 <= body["retry_after"] <= 61
        assert body["message"].endswith(f"; retry in about {body['retry_after']} s")

        # an anchor was just made (covering 0..1): the next one is due an interval later
        _anchor(pending_app, 2, AnchorState.FINAL)
        assert httpx.get(f"{url}/receipts/1").status_code == 200
        later = httpx.get(f"{url}/receipts/3").json()
        assert later["code"] == "receipt_pending" and 50 <= later["retry_after"] <= 61

        # a transaction covering the entry is already sent: a couple of blocks
        _anchor(pending_app, 4, AnchorState.SENT)
        soon = httpx.get(f"{url}/receipts/3")
        assert soon.json()["retry_after"] == 2 and soon.headers["Retry-After"] == "2"
        assert httpx.get(f"{url}/receipts/5").json()["retry_after"] >= 50  # 4 does not cover 5


def test_edit_refuses_a_delisted_listing_as_clearly(ex: Exchange) -> None:
    from test_auth_support import listing_content

    owner = ex.provider()
    listing_id = publish(ex, owner)
    delisted = ex.step(owner, listing_id, "delist", reason="done")
    assert delisted.status_code == 200, delisted.text
    payload = {"listing_id": listing_id, **listing_content(owner.key_id())}
    before = ex.log_size()
    refused = ex.act(owner, "PUT", f"/listings/{listing_id}", "listing.edited", payload)
    message = error(refused, 409, "invalid_state")
    assert message.startswith("the listing is delisted: its content can no longer be edited")
    assert ex.log_size() == before
