"""SM3 (GB/T 32905): known answers, streaming equals one-shot, files."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.sm3 import DIGEST_SIZE, SM3Hasher, sm3, sm3_file

# GB/T 32905-2016 Appendix A (examples 1 and 2) and the empty message.
KNOWN_ANSWERS = [
    pytest.param(
        b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0", id="abc"
    ),
    pytest.param(
        b"abcd" * 16,
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
        id="abcd*16",
    ),
    pytest.param(
        b"", "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b", id="empty"
    ),
]


@pytest.mark.parametrize(("message", "expected"), KNOWN_ANSWERS)
def test_known_answers(message: bytes, expected: str) -> None:
    assert sm3(message).hex() == expected
    hasher = SM3Hasher()
    hasher.update(message)
    assert hasher.hexdigest() == expected


@pytest.mark.parametrize(("message", "expected"), KNOWN_ANSWERS)
def test_byte_by_byte_streaming(message: bytes, expected: str) -> None:
    hasher = SM3Hasher()
    for i in range(len(message)):
        hasher.update(message[i : i + 1])
    assert hasher.digest() == bytes.fromhex(expected)


@settings(max_examples=50)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_streaming_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    hasher = SM3Hasher()
    for start, end in itertools.pairwise(bounds):
        hasher.update(data[start:end])
    assert hasher.digest() == sm3(data)
    assert len(hasher.digest()) == DIGEST_SIZE


def test_hasher_is_final_after_digest() -> None:
    hasher = SM3Hasher()
    hasher.update(b"abc")
    first = hasher.digest()
    assert hasher.digest() == first  # idempotent
    with pytest.raises(ValueError, match="finalised"):
        hasher.update(b"more")


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1 << 20])
def test_file_digest_and_progress(tmp_path: Path, chunk_size: int) -> None:
    data = bytes(range(256)) * 41 + b"tail"
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    seen: list[int] = []
    assert sm3_file(path, chunk_size=chunk_size, progress=seen.append) == sm3(data)
    assert sum(seen) == len(data)
    assert all(n <= chunk_size for n in seen)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sm3_file(str(path)) == sm3(b"")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sm3_file(tmp_path / "absent")
