"""The buyer's checks of a provider-held delivery (clients.sdk._receive.ReceiveJob, the
part of ``receive`` after the fetching): what the agent seals passes; every forgery
fails the check named after it, leaves nothing at the output path, and carries
evidence for a dispute."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import pytest
from delivery_support import Market, make_market, with_dataset, write_csv

from agent.deliver import Deliverer
from agent.state import AgentState
from clients.sdk import DeliveryCheckError, ExchangeClient, Order
from ledger import envelope
from ledger.sm2 import SM2PrivateKey


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return make_market(tmp_path)


def _seal(market: Market, order: Order, state: Path) -> tuple[dict[str, Any], Path]:
    with ExchangeClient("http://exchange.test", key=market.provider) as client:
        deliverer = Deliverer(client, AgentState(state), {order.listing_id: market.dataset}, print)
        progress = deliverer.seal(order, market.buyer.public_key())
    return dict(progress["delivery"]), deliverer.state.sealed_path(order.id)


def _receive(
    market: Market,
    order: Order,
    payload: dict[str, Any],
    sealed: Path,
    out: Path,
    signer: SM2PrivateKey | None = None,
) -> Any:
    """What ``receive`` does once it has fetched everything."""
    signer = signer or market.provider
    job = market.job(order, out)
    delivery = market.delivery(payload, signer)
    job.signer_key_id(delivery)
    version = market.signed_version(job)
    checked = job.check_record(delivery, delivery.record, signer.public_key(), version)
    shutil.copyfile(sealed, job.ciphertext)  # the download
    return job.open(checked, version)


def _fails(
    check: str,
    out: Path,
    market: Market,
    order: Order,
    payload: dict[str, Any],
    sealed: Path,
    signer: SM2PrivateKey | None = None,
) -> DeliveryCheckError:
    with pytest.raises(DeliveryCheckError) as caught:
        _receive(market, order, payload, sealed, out, signer)
    assert caught.value.check == check, caught.value
    assert caught.value.evidence["check"] == check
    assert caught.value.evidence["order_id"]
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []
    return caught.value


def test_a_sealed_whole_dataset_is_received(market: Market, tmp_path: Path) -> None:
    order = market.order()
    payload, sealed = _seal(market, order, tmp_path / "state")
    out = tmp_path / "out.csv"
    received = _receive(market, order, payload, sealed, out)
    assert out.read_bytes() == market.dataset.path.read_bytes()
    assert received.rows is None and received.sm3 == market.dataset.content_digest


def test_a_sealed_slice_is_received(market: Market, tmp_path: Path) -> None:
    order = market.order(rows=20, offset=10)
    payload, sealed = _seal(market, order, tmp_path / "state")
    out = tmp_path / "out.csv"
    received = _receive(market, order, payload, sealed, out)
    assert (received.rows.offset, received.rows.count) == (10, 20)
    assert len(out.read_text().splitlines()) == 21


def test_tampered_ciphertext_fails_ciphertext_sm3(market: Market, tmp_path: Path) -> None:
    order = market.order()
    payload, sealed = _seal(market, order, tmp_path / "state")
    data = bytearray(sealed.read_bytes())
    data[40] ^= 1
    sealed.write_bytes(bytes(data))
    error = _fails("ciphertext_sm3", tmp_path / "out.csv", market, order, payload, sealed)
    assert error.evidence["expected"]["sm3"] == payload["ciphertext_sm3"]


def test_a_key_wrapped_to_someone_else_fails_decrypt(market: Market, tmp_path: Path) -> None:
    order = market.order()
    payload, sealed = _seal(market, order, tmp_path / "state")
    stranger = SM2PrivateKey.generate().public_key()
    wrapped = envelope.wrap_key(stranger, bytes(16))
    payload["wrapped_key"] = base64.b64encode(wrapped).decode()
    _fails("decrypt", tmp_path / "out.csv", market, order, payload, sealed)


def test_a_ciphertext_of_another_order_fails_decrypt(market: Market, tmp_path: Path) -> None:
    other = market.order(order_id="o-2")
    payload, sealed = _seal(market, other, tmp_path / "state")
    payload["order_id"] = "o-1"  # the provider re-signs another order's deliverable
    _fails("decrypt", tmp_path / "out.csv", market, market.order(), payload, sealed)


def test_a_wrong_plaintext_sm3_fails_plaintext_sm3(market: Market, tmp_path: Path) -> None:
    order = market.order(rows=3)
    payload, sealed = _seal(market, order, tmp_path / "state")
    payload["plaintext_sm3"] = "ab" * 32
    _fails("plaintext_sm3", tmp_path / "out.csv", market, order, payload, sealed)


def test_another_file_for_a_whole_dataset_order_fails_content_digest(
    market: Market, tmp_path: Path
) -> None:
    order = market.order()
    changed = make_market(tmp_path / "b", write_csv(_dir(tmp_path / "b") / "x.csv", 99))
    forged = with_dataset(changed, listing_id=market.dataset.listing_id)
    forged.provider, forged.buyer = market.provider, market.buyer
    payload, sealed = _seal(forged, order, tmp_path / "state")
    _fails("content_digest", tmp_path / "out.csv", market, order, payload, sealed)


def test_one_changed_row_in_the_slice_fails_row_root(market: Market, tmp_path: Path) -> None:
    order = market.order(rows=20, offset=10)
    # the provider cuts from a file with row 15 changed, with that file's proof nodes
    changed = make_market(tmp_path / "b", write_csv(_dir(tmp_path / "b") / "x.csv", changed_row=15))
    forged = with_dataset(changed, listing_id=market.dataset.listing_id)
    forged.provider, forged.buyer = market.provider, market.buyer
    payload, sealed = _seal(forged, order, tmp_path / "state")
    payload["range_proof"]["row_root"] = market.dataset.row_root  # claims the signed root
    _fails("row_root", tmp_path / "out.csv", market, order, payload, sealed)


def test_a_slice_from_another_offset_fails(market: Market, tmp_path: Path) -> None:
    bought = market.order(rows=20, offset=10)
    # rows [30, 50) sealed for this very order (same id: it decrypts)
    payload, sealed = _seal(market, market.order(rows=20, offset=30), tmp_path / "state")
    out = tmp_path / "out.csv"
    _fails("range", out, market, bought, payload, sealed)  # as signed: not the rows bought
    payload["rows"] = {"offset": 10, "count": 20}  # relabelled as the rows bought
    _fails("proof", out, market, bought, payload, sealed)  # its proof has another shape
    honest, _ = _seal(market, bought, tmp_path / "honest")
    payload["range_proof"] = honest["range_proof"]  # with the proof of [10, 30)
    error = _fails("row_root", out, market, bought, payload, sealed)
    assert "rows [10, 30)" in error.message


def test_a_record_signed_by_a_non_provider_fails_signature(market: Market, tmp_path: Path) -> None:
    order = market.order()
    payload, sealed = _seal(market, order, tmp_path / "state")
    intruder = SM2PrivateKey.generate()
    error = _fails(
        "signature", tmp_path / "out.csv", market, order, payload, sealed, signer=intruder
    )
    assert error.evidence["actual"] == intruder.key_id()


def test_a_record_for_another_buyer_fails_signature(market: Market, tmp_path: Path) -> None:
    order = market.order()
    payload, sealed = _seal(market, order, tmp_path / "state")
    payload["buyer"] = SM2PrivateKey.generate().key_id()
    _fails("signature", tmp_path / "out.csv", market, order, payload, sealed)


def test_an_existing_output_survives_a_failed_check(market: Market, tmp_path: Path) -> None:
    order = market.order()
    payload, sealed = _seal(market, order, tmp_path / "state")
    payload["plaintext_sm3"] = "cd" * 32
    out = tmp_path / "out.csv"
    out.write_text("mine")
    with pytest.raises(DeliveryCheckError):
        _receive(market, order, payload, sealed, out)
    assert out.read_text() == "mine"


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
