"""SM4 (GB/T 32907) and SM4-GCM: known answers, round trips, every tamper raises."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import sm4
from ledger.errors import DecryptionError

# GB/T 32907-2016 Appendix A, example 1: one block, key = plaintext.
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_BLOCK_CIPHERTEXT = bytes.fromhex("681edf34d206965e86b3e94f536e4246")

# RFC 8998 Appendix A.1 (SM4-GCM), checked against the copies in nettle,
# Bouncy Castle and GmSSL test suites.
RFC8998_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
RFC8998_IV = bytes.fromhex("00001234567800000000ABCD")
RFC8998_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
RFC8998_PLAINTEXT = bytes.fromhex(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
RFC8998_CIPHERTEXT = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
)
RFC8998_TAG = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")


def test_sm4_block_known_answer() -> None:
    encryptor = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()  # noqa: S305 (one-block KAT)
    assert encryptor.update(SM4_KEY) + encryptor.finalize() == SM4_BLOCK_CIPHERTEXT


def test_rfc8998_encrypt() -> None:
    ciphertext, tag = sm4._seal(RFC8998_KEY, RFC8998_IV, RFC8998_PLAINTEXT, RFC8998_AAD)
    assert ciphertext == RFC8998_CIPHERTEXT
    assert tag == RFC8998_TAG


def test_rfc8998_decrypt_blob() -> None:
    blob = RFC8998_IV + RFC8998_CIPHERTEXT + RFC8998_TAG
    assert sm4.decrypt(RFC8998_KEY, blob, RFC8998_AAD) == RFC8998_PLAINTEXT


@settings(max_examples=40)
@given(plaintext=st.binary(max_size=3000), aad=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    key = sm4.generate_key()
    blob = sm4.encrypt(key, plaintext, aad)
    assert len(blob) == len(plaintext) + sm4.OVERHEAD
    assert sm4.decrypt(key, blob, aad) == plaintext


def test_fresh_iv_every_time() -> None:
    key = sm4.generate_key()
    assert sm4.encrypt(key, b"same") != sm4.encrypt(key, b"same")
    assert sm4.generate_key() != sm4.generate_key()
    assert len(sm4.generate_key()) == sm4.KEY_SIZE


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


_KEY = bytes(range(16))
_AAD = b"order:42"
_BLOB = sm4.encrypt(_KEY, b"the quick brown fox jumps over the lazy dog", _AAD)

BLOB_TAMPER_CASES = [
    pytest.param(_KEY, _flip(_BLOB, 0), _AAD, id="iv bit flip"),
    pytest.param(_KEY, _flip(_BLOB, sm4.IV_SIZE + 3), _AAD, id="ciphertext bit flip"),
    pytest.param(_KEY, _flip(_BLOB, len(_BLOB) - 1), _AAD, id="tag bit flip"),
    pytest.param(_KEY, _BLOB, b"order:43", id="wrong aad"),
    pytest.param(_KEY, _BLOB, b"", id="missing aad"),
    pytest.param(_flip(_KEY, 0), _BLOB, _AAD, id="wrong key"),
    pytest.param(_KEY, _BLOB[:-1], _AAD, id="truncated tag"),
    pytest.param(_KEY, _BLOB[: sm4.OVERHEAD - 1], _AAD, id="shorter than overhead"),
    pytest.param(_KEY, b"", _AAD, id="empty"),
    pytest.param(_KEY, _BLOB + b"\x00", _AAD, id="appended byte"),
]


@pytest.mark.parametrize(("key", "blob", "aad"), BLOB_TAMPER_CASES)
def test_tamper_raises(key: bytes, blob: bytes, aad: bytes) -> None:
    with pytest.raises(DecryptionError):
        sm4.decrypt(key, blob, aad)


def test_untampered_control() -> None:
    assert sm4.decrypt(_KEY, _BLOB, _AAD) == b"the quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize("key", [b"", b"k" * 15, b"k" * 17, b"k" * 32])
def test_bad_key_size(key: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        sm4.encrypt(key, b"x")
    with pytest.raises(ValueError, match="16 bytes"):
        sm4.decrypt(key, _BLOB)


# --------------------------------------------------------------------------- stream

CHUNK = sm4.MIN_CHUNK_SIZE
SEALED = CHUNK + sm4.TAG_SIZE
HEADER = sm4.STREAM_HEADER_SIZE


def _encrypt_stream(key: bytes, data: bytes, aad: bytes = b"") -> bytes:
    out = io.BytesIO()
    assert sm4.encrypt_stream(key, io.BytesIO(data), out, aad, chunk_size=CHUNK) == len(data)
    return out.getvalue()


def _decrypt_stream(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    out = io.BytesIO()
    n = sm4.decrypt_stream(key, io.BytesIO(sealed), out, aad)
    assert n == len(out.getvalue())
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_stream_round_trip(size: int) -> None:
    key = sm4.generate_key()
    data = bytes(i % 251 for i in range(size))
    sealed = _encrypt_stream(key, data, b"listing:7")
    chunks = max(1, -(-size // CHUNK))
    assert len(sealed) == HEADER + size + chunks * sm4.TAG_SIZE
    assert _decrypt_stream(key, sealed, b"listing:7") == data


class _Trickle(io.RawIOBase):
    """A reader returning at most 100 bytes per read, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 100) if size >= 0 else 100)


def test_stream_over_short_reads() -> None:
    key = sm4.generate_key()
    data = bytes(range(256)) * 20
    out = io.BytesIO()
    sm4.encrypt_stream(key, _Trickle(data), out, chunk_size=CHUNK)  # type: ignore[arg-type]
    plain = io.BytesIO()
    sm4.decrypt_stream(key, _Trickle(out.getvalue()), plain)  # type: ignore[arg-type]
    assert plain.getvalue() == data


_SKEY = bytes(range(100, 116))
_SDATA = bytes(i % 7 for i in range(3 * CHUNK))  # exactly three full chunks
_SEALED = _encrypt_stream(_SKEY, _SDATA, b"ctx")


def _chunk(i: int) -> bytes:
    return _SEALED[HEADER + i * SEALED : HEADER + (i + 1) * SEALED]


def _with_chunk_size(size: int) -> bytes:
    magic, version, _, prefix = struct.unpack(">4sBI7s", _SEALED[:HEADER])
    return struct.pack(">4sBI7s", magic, version, size, prefix) + _SEALED[HEADER:]


STREAM_TAMPER_CASES: list[object] = [
    pytest.param(lambda s: _flip(s, 10), id="header bit flip"),
    pytest.param(lambda s: _flip(s, 0), id="bad magic"),
    pytest.param(lambda s: _flip(s, 4), id="bad version"),
    pytest.param(lambda s: _with_chunk_size(2048), id="other chunk size"),
    pytest.param(lambda s: _with_chunk_size(1 << 30), id="huge chunk size"),
    pytest.param(lambda s: _flip(s, HEADER + 5), id="first chunk bit flip"),
    pytest.param(lambda s: _flip(s, len(s) - 1), id="last tag bit flip"),
    pytest.param(lambda s: s[: HEADER + 2 * SEALED], id="last chunk dropped"),
    pytest.param(lambda s: s[:HEADER] + _chunk(0) + _chunk(2), id="middle chunk dropped"),
    pytest.param(lambda s: s[:HEADER] + _chunk(1) + _chunk(0) + _chunk(2), id="chunks swapped"),
    pytest.param(lambda s: s + _chunk(2), id="chunk replayed at end"),
    pytest.param(lambda s: s[:-1], id="truncated by one byte"),
    pytest.param(lambda s: s[: HEADER + 10], id="truncated mid chunk"),
    pytest.param(lambda s: s[:HEADER], id="header only"),
    pytest.param(lambda s: s[: HEADER - 1], id="truncated header"),
    pytest.param(lambda s: b"", id="empty"),
]


@pytest.mark.parametrize("tamper", STREAM_TAMPER_CASES)
def test_stream_tamper_raises(tamper: Callable[[bytes], bytes]) -> None:
    with pytest.raises(DecryptionError):
        _decrypt_stream(_SKEY, tamper(_SEALED), b"ctx")


def test_stream_wrong_key_or_aad() -> None:
    assert _decrypt_stream(_SKEY, _SEALED, b"ctx") == _SDATA
    with pytest.raises(DecryptionError):
        _decrypt_stream(_flip(_SKEY, 3), _SEALED, b"ctx")
    with pytest.raises(DecryptionError):
        _decrypt_stream(_SKEY, _SEALED, b"other")


def test_stream_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        sm4.encrypt_stream(_SKEY, io.BytesIO(b""), io.BytesIO(), chunk_size=100)
