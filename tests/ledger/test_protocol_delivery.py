"""The provider-signed delivery payload: round trip and every refusal names its field."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ledger.protocol.delivery import (
    ProviderDelivery,
    RangeProof,
    RowRange,
    deliverable_aad,
)
from ledger.records import RecordFormatError

_SLICE = ProviderDelivery(
    order_id="6f1c3a52-0a57-4c39-9a3e-7d0c2f1c9b11",
    listing_id="0b6f2c1e-5c8e-4c55-9d7e-2f8a6f0e4d21",
    version=1,
    buyer="a" * 64,
    format="csv",
    rows=RowRange(offset=10, count=20),
    range_proof=RangeProof(tree_size=100, row_root="b" * 64, proof=("c" * 64, "d" * 64)),
    plaintext_sm3="e" * 64,
    plaintext_size=1234,
    ciphertext_sm3="f" * 64,
    ciphertext_size=1300,
    wrapped_key=base64.b64encode(b"\x04" * 128).decode(),
)


def test_round_trip_of_a_slice_and_of_a_whole_dataset() -> None:
    assert ProviderDelivery.from_dict(_SLICE.to_dict()) == _SLICE
    whole = {**_SLICE.to_dict(), "rows": None, "range_proof": None}
    parsed = ProviderDelivery.from_dict(whole)
    assert parsed.rows is None and parsed.range_proof is None
    assert parsed.wrapped_key_bytes() == b"\x04" * 128


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"extra": 1}, "payload.extra"),
        ({"range_proof": None}, "payload"),
        ({"rows": None}, "payload"),
        ({"rows": {"offset": 0, "count": 0}}, "payload.rows.count"),
        ({"rows": {"offset": -1, "count": 1}}, "payload.rows.offset"),
        ({"buyer": "A" * 64}, "payload.buyer"),
        ({"version": 0}, "payload.version"),
        ({"version": True}, "payload.version"),
        ({"ciphertext_size": 0}, "payload.ciphertext_size"),
        ({"wrapped_key": "not base64!"}, "payload.wrapped_key"),
        ({"wrapped_key": ""}, "payload.wrapped_key"),
        ({"wrapped_key": "A" * 600}, "payload.wrapped_key"),
        ({"format": ""}, "payload.format"),
        ({"range_proof": {"tree_size": 1, "row_root": "b" * 64, "proof": ["x"]}}, "proof[0]"),
        (
            {"range_proof": {"tree_size": 1, "row_root": "b" * 64, "proof": ["c" * 64] * 129}},
            "payload.range_proof.proof",
        ),
        ({"range_proof": {"tree_size": 0, "row_root": "b" * 64, "proof": []}}, "tree_size"),
    ],
)
def test_malformed_payloads_are_refused_naming_the_field(change: dict[str, Any], path: str) -> None:
    with pytest.raises(RecordFormatError) as caught:
        ProviderDelivery.from_dict({**_SLICE.to_dict(), **change})
    assert path in str(caught.value)


def test_a_missing_field_is_refused() -> None:
    data = _SLICE.to_dict()
    del data["plaintext_sm3"]
    with pytest.raises(RecordFormatError, match="plaintext_sm3"):
        ProviderDelivery.from_dict(data)


def test_the_associated_data_binds_order_listing_and_version() -> None:
    base = deliverable_aad("o1", "l1", 1)
    assert base != deliverable_aad("o2", "l1", 1)
    assert base != deliverable_aad("o1", "l2", 1)
    assert base != deliverable_aad("o1", "l1", 2)
    assert b'"kind":"shancheng.deliverable.v1"' in base
