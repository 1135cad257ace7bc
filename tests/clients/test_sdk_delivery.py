"""The buyer's side of a delivery (``ledger.delivery``, re-exported by the SDK):
open the envelope, decrypt the streamed ciphertext, check the committed SM3
digest; every tampering, the wrong key, the wrong listing version and a wrong
digest are refused and leave nothing at the destination. Also: the exchange's
content store writes what this reads."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from clients.sdk import DigestMismatchError, decrypt_delivery, decrypt_file
from exchange.content import ContentStore
from exchange.content import DigestMismatchError as ServerDigestMismatchError
from exchange.content import decrypt_file as server_decrypt_file
from ledger import envelope, sm4
from ledger.delivery import content_aad
from ledger.errors import DecryptionError, VerificationError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

PLAINTEXT = bytes(range(256)) * 40 + b"tail"  # several 1 KiB chunks and a short last one
DIGEST = sm3(PLAINTEXT).hex()


@pytest.fixture(scope="module")
def buyer() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def delivered(buyer: SM2PrivateKey) -> tuple[bytes, bytes]:
    """(ciphertext of listing L-1 version 2, the content key wrapped to the buyer)."""
    key = sm4.generate_key()
    out = io.BytesIO()
    sm4.encrypt_stream(key, io.BytesIO(PLAINTEXT), out, content_aad("L-1", 2), chunk_size=1024)
    return out.getvalue(), envelope.wrap_key(buyer.public_key(), key)


def test_decrypt_a_delivery_to_a_file(
    buyer: SM2PrivateKey, delivered: tuple[bytes, bytes], tmp_path: Path
) -> None:
    ciphertext, wrapped = delivered
    source = tmp_path / "download.sm4s"
    source.write_bytes(ciphertext)
    seen: list[int] = []
    digest = decrypt_delivery(
        buyer,
        wrapped,
        source,
        tmp_path / "data.csv",
        listing_id="L-1",
        version=2,
        expected_sm3_hex=DIGEST.upper(),
        progress=seen.append,
    )
    assert digest == DIGEST
    assert (tmp_path / "data.csv").read_bytes() == PLAINTEXT
    assert seen == sorted(seen) and seen[-1] == len(PLAINTEXT) and len(seen) == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "download.sm4s"]


def test_without_an_expected_digest_the_digest_is_returned(
    buyer: SM2PrivateKey, delivered: tuple[bytes, bytes]
) -> None:
    ciphertext, wrapped = delivered
    key = envelope.unwrap_key(buyer, wrapped)
    out = io.BytesIO()
    assert decrypt_file(key, io.BytesIO(ciphertext), out, listing_id="L-1", version=2) == DIGEST
    assert out.getvalue() == PLAINTEXT


def _cases(ciphertext: bytes) -> dict[str, tuple[bytes, str, int, str | None]]:
    flipped = bytearray(ciphertext)
    flipped[len(ciphertext) // 2] ^= 0x01
    return {
        "bit flip": (bytes(flipped), "L-1", 2, DIGEST),
        "truncated": (ciphertext[:-1], "L-1", 2, DIGEST),
        "last chunk dropped": (ciphertext[: 16 + 1040 * 10], "L-1", 2, DIGEST),
        "another version": (ciphertext, "L-1", 1, DIGEST),
        "another listing": (ciphertext, "L-2", 2, DIGEST),
        "empty": (b"", "L-1", 2, DIGEST),
    }


def test_tampering_fails_and_leaves_nothing(
    buyer: SM2PrivateKey, delivered: tuple[bytes, bytes], tmp_path: Path
) -> None:
    ciphertext, wrapped = delivered
    target = tmp_path / "data.csv"
    for desc, (data, listing, version, digest) in _cases(ciphertext).items():
        with pytest.raises(DecryptionError):
            decrypt_delivery(
                buyer,
                wrapped,
                io.BytesIO(data),
                target,
                listing_id=listing,
                version=version,
                expected_sm3_hex=digest,
            )
        assert list(tmp_path.iterdir()) == [], desc


def test_the_wrong_buyer_key_cannot_open_the_envelope(
    delivered: tuple[bytes, bytes], tmp_path: Path
) -> None:
    ciphertext, wrapped = delivered
    with pytest.raises(DecryptionError):
        decrypt_delivery(
            SM2PrivateKey.generate(),
            wrapped,
            io.BytesIO(ciphertext),
            tmp_path / "x",
            listing_id="L-1",
            version=2,
        )
    assert list(tmp_path.iterdir()) == []


def test_authentic_ciphertext_of_other_content_fails_the_digest_check(
    buyer: SM2PrivateKey, delivered: tuple[bytes, bytes], tmp_path: Path
) -> None:
    ciphertext, wrapped = delivered
    target = tmp_path / "data.csv"
    target.write_bytes(b"previous download")
    committed = sm3(b"what the listing committed to").hex()
    with pytest.raises(DigestMismatchError) as caught:
        decrypt_delivery(
            buyer,
            wrapped,
            io.BytesIO(ciphertext),
            target,
            listing_id="L-1",
            version=2,
            expected_sm3_hex=committed,
        )
    assert (caught.value.expected, caught.value.actual) == (committed, DIGEST)
    assert isinstance(caught.value, VerificationError)
    assert target.read_bytes() == b"previous download"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


@pytest.mark.parametrize("digest", ["", "00" * 31, "zz" * 32, "00" * 33])
def test_a_malformed_expected_digest_is_refused_before_reading(
    buyer: SM2PrivateKey, delivered: tuple[bytes, bytes], tmp_path: Path, digest: str
) -> None:
    _, wrapped = delivered
    with pytest.raises(ValueError, match="SM3"):
        decrypt_delivery(
            buyer,
            wrapped,
            io.BytesIO(b""),
            tmp_path / "x",
            listing_id="L-1",
            version=2,
            expected_sm3_hex=digest,
        )
    assert list(tmp_path.iterdir()) == []


def test_the_content_store_and_the_buyer_agree(buyer: SM2PrivateKey, tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store", bytes(16))
    content = store.ingest("L-9", 1, io.BytesIO(PLAINTEXT), DIGEST, chunk_size=1024)
    delivery = store.open_for_delivery("L-9", 1)
    ciphertext = b"".join(delivery.read_range())
    wrapped = store.envelope_for(buyer.public_key(), content)
    out = io.BytesIO()
    decrypt_delivery(
        buyer,
        wrapped,
        io.BytesIO(ciphertext),
        out,
        listing_id="L-9",
        version=1,
        expected_sm3_hex=content.sm3_hex,
    )
    assert out.getvalue() == PLAINTEXT
    # The exchange's re-export keeps its own (API) error type.
    with pytest.raises(ServerDigestMismatchError):
        server_decrypt_file(
            store.content_key(content),
            io.BytesIO(ciphertext),
            io.BytesIO(),
            listing_id="L-9",
            version=1,
            expected_sm3_hex="00" * 32,
        )
