"""agent.deliver: what the agent seals for an order (the whole file, or the rows bought
with their range proof, encrypted to the buyer for this order only), and how a re-run
after a crash at each step goes on from the step that was recorded.

The exchange is faked here only to fail (no connection, a refusal); the happy
path against a real exchange is tests/test_e2e_agent.py.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from delivery_support import Market, make_market

from agent.deliver import Deliverer, DeliveryRefused
from agent.state import AgentState
from clients.sdk import NO_RETRIES, ExchangeClient, Order, TransportError
from clients.slices import verify_slice
from ledger import envelope, sm4
from ledger.errors import DecryptionError
from ledger.protocol.delivery import ProviderDelivery, deliverable_aad
from ledger.sm2 import SM2PrivateKey


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return make_market(tmp_path)


def _deliverer(
    market: Market, state_dir: Path, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[Deliverer, list[str]]:
    client = ExchangeClient(
        "http://exchange.test",
        key=market.provider,
        transport=httpx.MockTransport(handler),
        retries=NO_RETRIES,
        trusted_log_key=SM2PrivateKey.generate().public_key(),  # no log-key request
    )
    lines: list[str] = []
    datasets = {market.dataset.listing_id: market.dataset}
    return Deliverer(client, AgentState(state_dir), datasets, lines.append), lines


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _refusing(code: str) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"code": code, "message": f"{code} (test)"})

    return handler


def _open(market: Market, order: Order, sealed: Path, delivery: ProviderDelivery) -> bytes:
    key = envelope.unwrap_key(market.buyer, delivery.wrapped_key_bytes())
    out = io.BytesIO()
    with open(sealed, "rb") as src:
        sm4.decrypt_stream(key, src, out, deliverable_aad(order.id, order.listing_id, 1))
    return out.getvalue()


def test_a_whole_dataset_order_seals_the_file_for_this_order_and_buyer_only(
    market: Market, tmp_path: Path
) -> None:
    deliverer, _ = _deliverer(market, tmp_path / "state", _unreachable)
    order = market.order()
    progress = deliverer.seal(order, market.buyer.public_key())
    delivery = ProviderDelivery.from_dict(progress["delivery"])
    sealed = deliverer.state.sealed_path(order.id)

    assert progress["step"] == "sealed"
    assert delivery.rows is None and delivery.range_proof is None
    assert delivery.plaintext_sm3 == market.dataset.content_digest
    assert delivery.ciphertext_size == sealed.stat().st_size
    assert _open(market, order, sealed, delivery) == market.dataset.path.read_bytes()
    other_order = market.order(order_id="o-2")
    with pytest.raises(DecryptionError):
        _open(market, other_order, sealed, delivery)
    with pytest.raises(DecryptionError):
        envelope.unwrap_key(market.provider, delivery.wrapped_key_bytes())


def test_a_quantity_order_seals_exactly_the_rows_bought_with_their_proof(
    market: Market, tmp_path: Path
) -> None:
    deliverer, lines = _deliverer(market, tmp_path / "state", _unreachable)
    order = market.order(rows=20, offset=30)
    progress = deliverer.seal(order, market.buyer.public_key())
    delivery = ProviderDelivery.from_dict(progress["delivery"])
    plaintext = _open(market, order, deliverer.state.sealed_path(order.id), delivery)

    assert delivery.rows is not None and delivery.range_proof is not None
    assert (delivery.rows.offset, delivery.rows.count) == (30, 20)
    assert delivery.range_proof.row_root == market.dataset.row_root
    assert delivery.range_proof.tree_size == 100
    lines_of_csv = plaintext.decode().splitlines()
    assert lines_of_csv[0] == "id,station,reading"
    assert [line.split(",")[0] for line in lines_of_csv[1:]] == [str(i) for i in range(30, 50)]
    received = tmp_path / "slice.csv"
    received.write_bytes(plaintext)
    assert market.dataset.row_root is not None
    verify_slice(
        received,
        30,
        20,
        100,
        bytes.fromhex(market.dataset.row_root),
        [bytes.fromhex(n) for n in delivery.range_proof.proof],
    )
    assert not deliverer.state.slice_path(order.id).exists()  # the plaintext slice is gone
    assert any("cut rows [30, 50)" in line for line in lines)


def test_an_order_of_another_version_or_listing_is_refused_before_anything_is_sealed(
    market: Market, tmp_path: Path
) -> None:
    deliverer, _ = _deliverer(market, tmp_path / "state", _unreachable)
    order = market.order()
    for other in (replace(order, version=2), replace(order, listing_id="another")):
        with pytest.raises(DeliveryRefused):
            deliverer.seal(other, market.buyer.public_key())
        assert not deliverer.state.sealed_path(order.id).exists()


def test_a_file_changed_since_start_is_not_delivered(market: Market, tmp_path: Path) -> None:
    deliverer, _ = _deliverer(market, tmp_path / "state", _unreachable)
    with open(market.dataset.path, "ab") as handle:
        handle.write(b"100,extra,1.0\n")
    order = market.order()
    with pytest.raises(DeliveryRefused, match="changed"):
        deliverer.seal(order, market.buyer.public_key())
    assert not deliverer.state.sealed_path(order.id).exists()
    assert deliverer.state.order(order.id) is None


def test_a_file_rewritten_since_start_is_not_sliced(market: Market, tmp_path: Path) -> None:
    """Same size, one row changed: the slice would not match the proof made from the row
    index of the file checked at start-up, so the agent refuses rather than cut it."""
    deliverer, _ = _deliverer(market, tmp_path / "state", _unreachable)
    data = market.dataset.path.read_bytes()
    changed = data.replace(b"\n35,", b"\n53,", 1)
    assert len(changed) == len(data) and changed != data
    market.dataset.path.write_bytes(changed)
    os.utime(market.dataset.path, ns=(0, market.dataset.path.stat().st_mtime_ns + 1_000_000))
    order = market.order(rows=20, offset=30)
    with pytest.raises(DeliveryRefused, match="changed since the agent checked it"):
        deliverer.seal(order, market.buyer.public_key())
    assert not deliverer.state.sealed_path(order.id).exists()
    assert not deliverer.state.slice_path(order.id).exists()


def test_a_crash_after_sealing_resumes_at_the_upload_with_the_same_sealed_bytes(
    market: Market, tmp_path: Path
) -> None:
    deliverer, _ = _deliverer(market, tmp_path / "state", _unreachable)
    order = market.order(rows=5, offset=0)
    deliverer.seal(order, market.buyer.public_key())  # ... then the process died
    sealed = deliverer.state.sealed_path(order.id)
    before = (sealed.read_bytes(), deliverer.state.order(order.id))

    with pytest.raises(TransportError):
        deliverer.deliver(order)  # the exchange is down: the upload fails

    assert (sealed.read_bytes(), deliverer.state.order(order.id)) == before


def test_a_crash_after_the_upload_resumes_at_the_issue(market: Market, tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        raise httpx.ConnectError("refused", request=request)

    deliverer, _ = _deliverer(market, tmp_path / "state", handler)
    order = market.order()
    progress = deliverer.seal(order, market.buyer.public_key())
    deliverer.state.save_order(order.id, {**progress, "step": "uploaded"})

    with pytest.raises(TransportError):
        deliverer.deliver(order)

    assert seen == [f"POST /orders/{order.id}/deliverable"]  # no second upload
    assert deliverer.state.order(order.id) == {**progress, "step": "uploaded"}


@pytest.mark.parametrize("step", ["sealed", "uploaded"])
def test_an_order_the_exchange_already_has_delivered_ends_delivered(
    market: Market, tmp_path: Path, step: str
) -> None:
    # the crash came after the delivery.issued record was accepted, before it was noted
    deliverer, lines = _deliverer(market, tmp_path / "state", _refusing("already_delivered"))
    order = market.order()
    progress = deliverer.seal(order, market.buyer.public_key())
    deliverer.state.save_order(order.id, {**progress, "step": step})

    assert deliverer.deliver(order) == "already_delivered"
    assert deliverer.state.order(order.id) == {"step": "delivered"}
    assert not deliverer.state.sealed_path(order.id).exists()
    assert deliverer.deliver(order) == "delivered"  # and nothing more is sent
    assert lines[-1].endswith("already delivered")


def test_a_refunded_order_ends_closed(market: Market, tmp_path: Path) -> None:
    deliverer, _ = _deliverer(market, tmp_path / "state", _refusing("order_closed"))
    order = market.order()
    deliverer.seal(order, market.buyer.public_key())

    assert deliverer.deliver(order) == "closed"
    assert deliverer.state.order(order.id) == {"step": "closed"}
    assert not deliverer.state.sealed_path(order.id).exists()


def test_a_sealed_file_lost_after_a_crash_is_sealed_again(market: Market, tmp_path: Path) -> None:
    deliverer, _ = _deliverer(market, tmp_path / "state", _unreachable)
    order = market.order()
    deliverer.seal(order, market.buyer.public_key())
    shutil.rmtree(deliverer.state.root / "work")
    (deliverer.state.root / "work").mkdir()

    with pytest.raises(TransportError):  # sealing again asks for the buyer's key
        deliverer.deliver(order)
