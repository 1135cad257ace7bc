"""The encrypted content store: streamed ingest, refusals that keep nothing,
tamper detection at decryption, byte-range delivery and resumable downloads."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from exchange.content import (
    ContentCorruptError,
    ContentExistsError,
    ContentNotFoundError,
    ContentStore,
    ContentTooLargeError,
    DigestMismatchError,
    InvalidContentIdError,
    MasterKeyError,
    RangeNotSatisfiableError,
    StoredContent,
    content_aad,
    content_range,
    content_store_from_settings,
    decrypt_file,
    load_or_create_master_key,
    parse_range,
)
from exchange.content.store import CIPHERTEXT_NAME, META_NAME
from exchange.settings import Settings
from ledger import envelope, sm4
from ledger.errors import DecryptionError
from ledger.sm2 import SM2PrivateKey
from ledger.sm3 import sm3

CHUNK = 1024  # small chunks: many chunk boundaries in small test files
HEADER = sm4.STREAM_HEADER_SIZE
SEALED = CHUNK + sm4.TAG_SIZE


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content", sm4.generate_key())


def _data(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def _ingest(
    store: ContentStore, data: bytes, version: int = 1, max_bytes: int | None = None
) -> StoredContent:
    return store.ingest(
        "lst_a", version, io.BytesIO(data), sm3(data).hex(), max_bytes, chunk_size=CHUNK
    )


def _ciphertext(store: ContentStore, listing: str = "lst_a", version: int = 1) -> bytes:
    return b"".join(store.open_for_delivery(listing, version).read_range())


def _decrypt(store: ContentStore, ciphertext: bytes, version: int = 1) -> bytes:
    key = store.content_key(store.get("lst_a", version))
    out = io.BytesIO()
    decrypt_file(key, io.BytesIO(ciphertext), out, listing_id="lst_a", version=version)
    return out.getvalue()


def _nothing_kept(store: ContentStore) -> None:
    assert list((store.root / "tmp").iterdir()) == []
    assert not (store.root / "objects" / "lst_a").exists() or not any(
        (store.root / "objects" / "lst_a").iterdir()
    )


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17],
    ids=lambda s: f"{s}B",
)
def test_round_trip(store: ContentStore, tmp_path: Path, size: int) -> None:
    data = _data(size)
    content = _ingest(store, data)
    stored = store.get("lst_a", 1)
    assert stored == content
    assert stored.sm3_hex == sm3(data).hex()
    assert stored.plaintext_size == size
    chunks = max(1, -(-size // CHUNK))
    assert stored.ciphertext_size == HEADER + size + chunks * sm4.TAG_SIZE
    ciphertext = _ciphertext(store)
    assert len(ciphertext) == stored.ciphertext_size
    # Short plaintexts can appear in random ciphertext by chance; 16+ bytes cannot.
    assert data not in ciphertext or size < 16
    # The buyer's side: a file on disk, decrypted to a path, digest checked.
    downloaded = tmp_path / "download.sm4s"
    downloaded.write_bytes(ciphertext)
    key = store.content_key(stored)
    digest = decrypt_file(
        key,
        downloaded,
        tmp_path / "plain.bin",
        listing_id="lst_a",
        version=1,
        expected_sm3_hex=stored.sm3_hex,
    )
    assert digest == stored.sm3_hex
    assert (tmp_path / "plain.bin").read_bytes() == data


def test_exact_multiple_of_the_chunk_size_has_no_empty_trailing_chunk(
    store: ContentStore,
) -> None:
    data = _data(4 * CHUNK)
    content = _ingest(store, data)
    assert content.ciphertext_size == HEADER + 4 * SEALED
    assert _decrypt(store, _ciphertext(store)) == data


def test_empty_content(store: ContentStore) -> None:
    content = _ingest(store, b"")
    assert content.ciphertext_size == HEADER + sm4.TAG_SIZE
    assert _decrypt(store, _ciphertext(store)) == b""


def test_iterable_of_odd_sized_pieces(store: ContentStore) -> None:
    data = _data(5 * CHUNK + 333)
    pieces = [data[i : i + 77] for i in range(0, len(data), 77)] + [b""]
    store.ingest("lst_a", 1, iter(pieces), sm3(data).hex(), chunk_size=CHUNK)
    assert _decrypt(store, _ciphertext(store)) == data


def test_stored_format_is_the_ledger_sm4_stream(store: ContentStore) -> None:
    data = _data(2 * CHUNK + 5)
    _ingest(store, data)
    key = store.content_key(store.get("lst_a", 1))
    out = io.BytesIO()
    sm4.decrypt_stream(key, io.BytesIO(_ciphertext(store)), out, content_aad("lst_a", 1))
    assert out.getvalue() == data


def test_each_content_has_a_fresh_key(store: ContentStore) -> None:
    data = _data(100)
    _ingest(store, data, version=1)
    _ingest(store, data, version=2)
    assert store.content_key(store.get("lst_a", 1)) != store.content_key(store.get("lst_a", 2))
    assert _ciphertext(store, version=1) != _ciphertext(store, version=2)


def test_files_are_private(store: ContentStore) -> None:
    _ingest(store, _data(10))
    directory = store.root / "objects" / "lst_a" / "1"
    for name in (CIPHERTEXT_NAME, META_NAME):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


# --------------------------------------------------------------------------- refusals keep nothing


def test_wrong_digest_is_refused_and_nothing_kept(store: ContentStore) -> None:
    data = _data(3 * CHUNK)
    with pytest.raises(DigestMismatchError) as caught:
        store.ingest("lst_a", 1, io.BytesIO(data), "00" * 32, chunk_size=CHUNK)
    assert caught.value.expected == "00" * 32
    assert caught.value.actual == sm3(data).hex()
    assert caught.value.status == 422
    _nothing_kept(store)
    with pytest.raises(ContentNotFoundError):
        store.get("lst_a", 1)
    # The version is still free for the right content.
    _ingest(store, data)


def test_too_large_is_refused_and_nothing_kept(store: ContentStore) -> None:
    data = _data(3 * CHUNK)
    _ingest(store, data, max_bytes=len(data))  # exactly at the limit is fine
    with pytest.raises(ContentTooLargeError) as caught:
        _ingest(store, data, version=2, max_bytes=len(data) - 1)
    assert caught.value.status == 413
    assert not store.exists("lst_a", 2)
    assert list((store.root / "tmp").iterdir()) == []


def test_disconnect_mid_upload_keeps_nothing(store: ContentStore) -> None:
    data = _data(10 * CHUNK)

    def upload() -> Iterator[bytes]:
        yield data[: 4 * CHUNK]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.ingest("lst_a", 1, upload(), sm3(data).hex(), chunk_size=CHUNK)
    _nothing_kept(store)


def test_non_bytes_chunks_are_refused(store: ContentStore) -> None:
    with pytest.raises(TypeError):
        store.ingest("lst_a", 1, iter(["text"]), "00" * 32)  # type: ignore[arg-type]
    _nothing_kept(store)


def test_other_content_for_a_stored_version_conflicts(store: ContentStore) -> None:
    first = _ingest(store, b"first")
    assert _ingest(store, b"first") == first  # an idempotent retry
    with pytest.raises(ContentExistsError) as caught:
        _ingest(store, b"second")
    assert caught.value.status == 409
    assert _decrypt(store, _ciphertext(store)) == b"first"


@pytest.mark.parametrize(
    ("listing", "version"),
    [("../etc", 1), ("", 1), ("a/b", 1), (".hidden", 1), ("x" * 129, 1), ("ok", 0), ("ok", True)],
)
def test_unsafe_ids_are_refused(store: ContentStore, listing: str, version: int) -> None:
    with pytest.raises(InvalidContentIdError):
        store.ingest(listing, version, io.BytesIO(b"x"), sm3(b"x").hex())


@pytest.mark.parametrize("digest", ["", "zz" * 32, "00" * 31, 5])
def test_malformed_expected_digest_is_refused(store: ContentStore, digest: object) -> None:
    with pytest.raises(InvalidContentIdError):
        store.ingest("lst_a", 1, io.BytesIO(b"x"), digest)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tamper detection


@pytest.fixture
def stored(store: ContentStore) -> tuple[ContentStore, bytes, bytes]:
    data = _data(4 * CHUNK + 100)
    _ingest(store, data)
    return store, data, _ciphertext(store)


def _chunks(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[HEADER:]
    return ciphertext[:HEADER], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


TAMPERS: dict[str, Callable[[bytes, list[bytes]], bytes]] = {
    "drop last chunk": lambda h, c: h + b"".join(c[:-1]),
    "drop middle chunk": lambda h, c: h + b"".join(c[:2] + c[3:]),
    "swap two chunks": lambda h, c: h + b"".join([c[1], c[0], *c[2:]]),
    "duplicate a chunk": lambda h, c: h + b"".join([c[0], *c]),
    "cut mid-chunk": lambda h, c: (h + b"".join(c))[:-40],
    "cut one byte": lambda h, c: (h + b"".join(c))[:-1],
    "header only": lambda h, c: h,
    "nothing": lambda h, c: b"",
    "append a byte": lambda h, c: h + b"".join(c) + b"\x00",
    "flip header chunk size": lambda h, c: h[:5] + bytes([h[5] ^ 1]) + h[6:] + b"".join(c),
    "flip nonce prefix": lambda h, c: h[:-1] + bytes([h[-1] ^ 1]) + b"".join(c),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_ciphertext_fails_to_decrypt(
    stored: tuple[ContentStore, bytes, bytes], name: str
) -> None:
    store, _, ciphertext = stored
    header, chunks = _chunks(ciphertext)
    with pytest.raises(DecryptionError):
        _decrypt(store, TAMPERS[name](header, chunks))


def test_every_bit_flip_position_class_is_detected(
    stored: tuple[ContentStore, bytes, bytes],
) -> None:
    store, _, ciphertext = stored
    positions = [0, 4, HEADER, HEADER + 1, HEADER + CHUNK - 1, HEADER + CHUNK, HEADER + SEALED]
    positions += [len(ciphertext) - 1, len(ciphertext) - sm4.TAG_SIZE - 1]
    positions += random.Random(3).sample(range(len(ciphertext)), 20)
    for position in positions:
        flipped = bytearray(ciphertext)
        flipped[position] ^= 0x80
        with pytest.raises(DecryptionError):
            _decrypt(store, bytes(flipped))


def test_wrong_listing_version_or_key_fails(stored: tuple[ContentStore, bytes, bytes]) -> None:
    store, _, ciphertext = stored
    key = store.content_key(store.get("lst_a", 1))
    for listing, version, k in (("lst_a", 2, key), ("lst_b", 1, key), ("lst_a", 1, bytes(16))):
        with pytest.raises(DecryptionError):
            decrypt_file(
                k, io.BytesIO(ciphertext), io.BytesIO(), listing_id=listing, version=version
            )


def test_failed_decryption_leaves_no_output_file(
    stored: tuple[ContentStore, bytes, bytes], tmp_path: Path
) -> None:
    store, _, ciphertext = stored
    key = store.content_key(store.get("lst_a", 1))
    target = tmp_path / "out.bin"
    with pytest.raises(DecryptionError):
        decrypt_file(key, io.BytesIO(ciphertext[:-1]), target, listing_id="lst_a", version=1)
    with pytest.raises(DigestMismatchError):
        decrypt_file(
            key,
            io.BytesIO(ciphertext),
            target,
            listing_id="lst_a",
            version=1,
            expected_sm3_hex="00" * 32,
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "content"]


def test_tampered_metadata_is_caught(stored: tuple[ContentStore, bytes, bytes]) -> None:
    store, _, _ = stored
    meta = store.root / "objects" / "lst_a" / "1" / META_NAME
    data = json.loads(meta.read_bytes())
    data["sm3"] = "11" * 32  # a digest the wrapped key was not sealed with
    meta.write_text(json.dumps(data))
    with pytest.raises(ContentCorruptError, match="unwrap"):
        store.content_key(store.get("lst_a", 1))
    meta.write_text("{not json")
    with pytest.raises(ContentCorruptError):
        store.get("lst_a", 1)


def test_truncated_stored_ciphertext_is_caught(stored: tuple[ContentStore, bytes, bytes]) -> None:
    store, _, ciphertext = stored
    (store.root / "objects" / "lst_a" / "1" / CIPHERTEXT_NAME).write_bytes(ciphertext[:-1])
    with pytest.raises(ContentCorruptError):
        store.open_for_delivery("lst_a", 1)


def test_another_master_key_cannot_unwrap(stored: tuple[ContentStore, bytes, bytes]) -> None:
    store, _, _ = stored
    other = ContentStore(store.root, sm4.generate_key())
    with pytest.raises(ContentCorruptError, match="master key"):
        other.content_key(other.get("lst_a", 1))


# --------------------------------------------------------------------------- delivery


def test_ranges_stitch_to_the_whole_ciphertext(stored: tuple[ContentStore, bytes, bytes]) -> None:
    store, _, ciphertext = stored
    delivery = store.open_for_delivery("lst_a", 1)
    assert delivery.size == len(ciphertext)
    rng = random.Random(11)
    cuts = sorted({0, delivery.size, *rng.sample(range(1, delivery.size), 9)})
    parts = [
        b"".join(delivery.read_range(a, b, block_size=100)) for a, b in itertools.pairwise(cuts)
    ]
    assert b"".join(parts) == ciphertext
    assert b"".join(delivery.read_range(5, 5)) == b""
    assert all(len(block) <= 100 for block in delivery.read_range(0, None, block_size=100))


def test_resume_an_interrupted_download(
    stored: tuple[ContentStore, bytes, bytes], tmp_path: Path
) -> None:
    store, data, _ = stored
    delivery = store.open_for_delivery("lst_a", 1)
    partial = tmp_path / "download.part"
    with open(partial, "wb") as out:
        for i, block in enumerate(delivery.read_range(block_size=1000)):
            out.write(block)
            if i == 2:
                break  # connection lost after 3 blocks
    offset = partial.stat().st_size
    assert 0 < offset < delivery.size
    # The client resumes with "Range: bytes=<offset>-".
    start, end = parse_range(f"bytes={offset}-", delivery.size) or (0, 0)
    with open(partial, "ab") as out:
        for block in delivery.read_range(start, end):
            out.write(block)
    key = envelope.unwrap_key(
        buyer := SM2PrivateKey.generate(),
        store.envelope_for(buyer.public_key(), store.get("lst_a", 1)),
    )
    target = tmp_path / "plain.bin"
    digest = decrypt_file(
        key, partial, target, listing_id="lst_a", version=1, expected_sm3_hex=sm3(data).hex()
    )
    assert digest == sm3(data).hex()
    assert target.read_bytes() == data


def test_envelope_opens_only_for_its_buyer(stored: tuple[ContentStore, bytes, bytes]) -> None:
    store, _, _ = stored
    buyer, other = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    content = store.get("lst_a", 1)
    wrapped = store.envelope_for(buyer.public_key(), content)
    assert envelope.unwrap_key(buyer, wrapped) == store.content_key(content)
    with pytest.raises(DecryptionError):
        envelope.unwrap_key(other, wrapped)


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (0, 10**9), (10, 5), (0, 1.5)])
def test_out_of_bounds_ranges_are_refused(
    stored: tuple[ContentStore, bytes, bytes], start: int, end: int
) -> None:
    store, _, _ = stored
    delivery = store.open_for_delivery("lst_a", 1)
    with pytest.raises(RangeNotSatisfiableError) as caught:
        delivery.read_range(start, end)
    assert caught.value.status == 416
    assert caught.value.size == delivery.size


def test_missing_content(store: ContentStore) -> None:
    with pytest.raises(ContentNotFoundError) as caught:
        store.open_for_delivery("lst_a", 1)
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 100)),
        ("bytes=10-", (10, 1000)),
        ("bytes=-100", (900, 1000)),
        ("bytes=-5000", (0, 1000)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=999-999", (999, 1000)),
        ("bytes=0-1,5-6", None),  # multi-range: ignored, whole body
        ("items=0-5", None),
        ("bytes=5-1", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError) as caught:
        parse_range(header, 1000)
    assert caught.value.size == 1000


def test_content_range_header() -> None:
    assert content_range(10, 20, 1000) == "bytes 10-19/1000"


# --------------------------------------------------------------------------- housekeeping


def test_delete_and_sweep(store: ContentStore) -> None:
    _ingest(store, b"abc")
    store.delete("lst_a", 1)
    store.delete("lst_a", 1)
    assert not store.exists("lst_a", 1)
    stale = store.root / "tmp" / "stale"
    stale.mkdir()
    os.utime(stale, (0, 0))
    (store.root / "tmp" / "fresh").mkdir()
    assert store.sweep_temporary() == 1
    assert [p.name for p in (store.root / "tmp").iterdir()] == ["fresh"]


def test_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "content-master.key"
    key = load_or_create_master_key(path)
    assert len(key) == 16
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_master_key(path) == key
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="mode"):
        load_or_create_master_key(path)
    path.chmod(0o600)
    path.write_text("not hex\n")
    with pytest.raises(MasterKeyError):
        load_or_create_master_key(path)
    path.write_text("00" * 8 + "\n")
    with pytest.raises(MasterKeyError):
        load_or_create_master_key(path)


# --------------------------------------------------------------------------- async


def test_ingest_async_from_an_async_stream(store: ContentStore) -> None:
    data = _data(6 * CHUNK + 9)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 500):
            await anyio.sleep(0)
            yield data[i : i + 500]

    async def main() -> None:
        await store.ingest_async("lst_a", 1, body(), sm3(data).hex(), chunk_size=CHUNK)

    anyio.run(main)
    assert _decrypt(store, _ciphertext(store)) == data


def test_ingest_async_disconnect_keeps_nothing(store: ContentStore) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 3000
        raise ConnectionResetError("gone")

    async def main() -> None:
        await store.ingest_async("lst_a", 1, body(), "00" * 32, chunk_size=CHUNK)

    with pytest.raises(ConnectionResetError):
        anyio.run(main)
    _nothing_kept(store)


def test_store_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    store = content_store_from_settings(settings)
    assert store.root == tmp_path / "var" / "content"
    assert stat.S_IMODE((tmp_path / "var" / "content-master.key").stat().st_mode) == 0o600
    _ingest(store, b"hello")
    again = content_store_from_settings(settings)  # same master key: content still opens
    assert _decrypt(again, _ciphertext(again)) == b"hello"
