"""GM digital envelope: round trips, JSON form, every tamper raises a typed error."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from ledger import envelope, sm4
from ledger.envelope import Envelope
from ledger.errors import DecryptionError, EnvelopeFormatError
from ledger.sm2 import SM2PrivateKey


@pytest.fixture(scope="module")
def buyer() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def stranger() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def sealed(buyer: SM2PrivateKey) -> Envelope:
    return envelope.seal(buyer.public_key(), b"rows,of,data\n1,2,3\n", b"order:42")


@pytest.mark.parametrize("size", [0, 1, 100, 70_000])
def test_seal_open_round_trip(buyer: SM2PrivateKey, size: int) -> None:
    content = bytes(i % 256 for i in range(size))
    env = envelope.seal(buyer.public_key(), content, b"ctx")
    assert env.recipient == buyer.key_id()
    assert env.version == envelope.ENVELOPE_VERSION == 1
    assert env.algorithm == "SM2-SM4-GCM"
    assert len(env.ciphertext) == size + sm4.OVERHEAD
    assert envelope.open(buyer, env, b"ctx") == content


def test_fresh_content_key_each_time(buyer: SM2PrivateKey) -> None:
    first = envelope.seal(buyer.public_key(), b"same")
    second = envelope.seal(buyer.public_key(), b"same")
    assert envelope.unwrap_key(buyer, first.wrapped_key) != envelope.unwrap_key(
        buyer, second.wrapped_key
    )


def test_json_round_trip(buyer: SM2PrivateKey, sealed: Envelope) -> None:
    text = sealed.to_json()
    fields = json.loads(text)
    assert set(fields) == {"algorithm", "ciphertext", "recipient", "version", "wrapped_key"}
    assert fields["version"] == 1
    assert base64.b64decode(fields["wrapped_key"]) == sealed.wrapped_key
    again = Envelope.from_json(text)
    assert again == sealed
    assert Envelope.from_json(text.encode()) == sealed
    assert Envelope.from_dict(sealed.to_dict()) == sealed
    assert envelope.open(buyer, again, b"order:42") == b"rows,of,data\n1,2,3\n"
    assert again.to_json() == text  # deterministic


def test_envelope_is_frozen(sealed: Envelope) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        sealed.recipient = "0" * 64  # type: ignore[misc]


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def test_untampered_control(buyer: SM2PrivateKey, sealed: Envelope) -> None:
    assert envelope.open(buyer, sealed, b"order:42") == b"rows,of,data\n1,2,3\n"


@pytest.mark.parametrize(
    ("change", "aad"),
    [
        pytest.param({"ciphertext": lambda c: _flip(c, 0)}, b"order:42", id="iv bit flip"),
        pytest.param({"ciphertext": lambda c: _flip(c, 15)}, b"order:42", id="content bit flip"),
        pytest.param({"ciphertext": lambda c: _flip(c, len(c) - 1)}, b"order:42", id="tag flip"),
        pytest.param({"ciphertext": lambda c: c[:-1]}, b"order:42", id="content truncated"),
        pytest.param({"wrapped_key": lambda w: _flip(w, 10)}, b"order:42", id="wrapped C1 flip"),
        pytest.param({"wrapped_key": lambda w: _flip(w, len(w) - 1)}, b"order:42", id="wrapped C2"),
        pytest.param({"wrapped_key": lambda w: w[:-2]}, b"order:42", id="wrapped truncated"),
        pytest.param({}, b"order:43", id="wrong aad"),
        pytest.param({}, b"", id="missing aad"),
    ],
)
def test_tamper_raises(
    buyer: SM2PrivateKey, sealed: Envelope, change: dict[str, Any], aad: bytes
) -> None:
    tampered = dataclasses.replace(
        sealed, **{field: edit(getattr(sealed, field)) for field, edit in change.items()}
    )
    with pytest.raises(DecryptionError):
        envelope.open(buyer, tampered, aad)


def test_wrong_recipient(sealed: Envelope, stranger: SM2PrivateKey) -> None:
    with pytest.raises(DecryptionError, match="envelope is for key"):
        envelope.open(stranger, sealed, b"order:42")
    # Readdressing the envelope does not help the stranger.
    readdressed = dataclasses.replace(sealed, recipient=stranger.key_id())
    with pytest.raises(DecryptionError):
        envelope.open(stranger, readdressed, b"order:42")


def test_wrapped_key_of_the_wrong_size(buyer: SM2PrivateKey, sealed: Envelope) -> None:
    swapped = dataclasses.replace(sealed, wrapped_key=buyer.public_key().encrypt(b"x" * 32))
    with pytest.raises(DecryptionError, match="not an SM4 content key"):
        envelope.open(buyer, swapped, b"order:42")


def test_wrap_unwrap_key(buyer: SM2PrivateKey) -> None:
    key = sm4.generate_key()
    wrapped = envelope.wrap_key(buyer.public_key(), key)
    assert envelope.unwrap_key(buyer, wrapped) == key
    with pytest.raises(ValueError, match="16 bytes"):
        envelope.wrap_key(buyer.public_key(), b"short")
    with pytest.raises(DecryptionError):
        envelope.unwrap_key(buyer, _flip(wrapped, 20))


def _good_fields(sealed: Envelope) -> dict[str, Any]:
    return sealed.to_dict()


MALFORMED_JSON = [
    pytest.param(lambda d: "not json", id="not json"),
    pytest.param(lambda d: "[1, 2]", id="array"),
    pytest.param(lambda d: "null", id="null"),
    pytest.param(lambda d: {k: v for k, v in d.items() if k != "wrapped_key"}, id="missing field"),
    pytest.param(lambda d: {**d, "extra": 1}, id="unexpected field"),
    pytest.param(lambda d: {**d, "version": 2}, id="unknown version"),
    pytest.param(lambda d: {**d, "version": "1"}, id="version as string"),
    pytest.param(lambda d: {**d, "version": True}, id="version as bool"),
    pytest.param(lambda d: {**d, "algorithm": "RSA-AES-GCM"}, id="unknown algorithm"),
    pytest.param(lambda d: {**d, "recipient": "ABC"}, id="recipient not a key id"),
    pytest.param(lambda d: {**d, "recipient": d["recipient"].upper()}, id="recipient upper"),
    pytest.param(lambda d: {**d, "recipient": 7}, id="recipient not a string"),
    pytest.param(lambda d: {**d, "wrapped_key": "***"}, id="wrapped_key not base64"),
    pytest.param(lambda d: {**d, "wrapped_key": ""}, id="wrapped_key empty"),
    pytest.param(lambda d: {**d, "ciphertext": 12}, id="ciphertext not a string"),
    pytest.param(lambda d: {**d, "ciphertext": "QUJD"}, id="ciphertext too short"),
    pytest.param(lambda d: {**d, "ciphertext": d["ciphertext"][:-2]}, id="bad base64 padding"),
]


@pytest.mark.parametrize("mutate", MALFORMED_JSON)
def test_malformed_json_raises(sealed: Envelope, mutate: Any) -> None:
    value = mutate(_good_fields(sealed))
    text = value if isinstance(value, str) else json.dumps(value)
    with pytest.raises(EnvelopeFormatError):
        Envelope.from_json(text)
