"""SM2: golden vectors made by OpenSSL 3, round trips, typed errors for every failure."""

from __future__ import annotations

import base64
import copy
import pickle
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import (
    CryptoError,
    DecryptionError,
    InvalidSignature,
    KeyFormatError,
    KeyPasswordError,
    UnsupportedKeyError,
    VerificationError,
)
from ledger.sm2 import DEFAULT_DISTID, SM2PrivateKey, SM2PublicKey
from ledger.sm3 import sm3

# Made with OpenSSL 3.0:
#   openssl genpkey -algorithm SM2 -out priv.pem; openssl pkey -in priv.pem -pubout
#   openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt distid:1234567812345678 ...  (SIG)
#   openssl pkeyutl -sign -rawin -digest sm3 ...                  (SIG_EMPTY_ID: no distid)
#   openssl pkeyutl -encrypt -pubin -inkey pub.pem -in key16      (CIPHERTEXT)
GOLDEN_PRIVATE_PEM = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqBHM9VAYItBG0wawIBAQQgTpQUmku/mw98bfgu
aBBDaVwoGA25Rll8JUW8DmWh7bKhRANCAASfts4qV+vzFLt7nA1Q87GlXBoeSnCk
Nah0+Uu+Ya7MtUqknWfIPEHAcjXnh5uy1TvmT330FAJj5FSPJsif15KX
-----END PRIVATE KEY-----
"""
GOLDEN_PUBLIC_PEM = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEn7bOKlfr8xS7e5wNUPOxpVwaHkpw
pDWodPlLvmGuzLVKpJ1nyDxBwHI154ebstU75k999BQCY+RUjybIn9eSlw==
-----END PUBLIC KEY-----
"""
GOLDEN_MESSAGE = b"shancheng golden vector"
GOLDEN_SIG = bytes.fromhex(
    "3045022100a54d2533bf5a50b53d77a12b4170b8a74ca8a714fb8ff96458023d5a03c0c19a"
    "02203164076499822192bb8b43a7288063039b47f925abcb40cc76d10b722ffadfe2"
)
GOLDEN_SIG_EMPTY_ID = bytes.fromhex(
    "30460221009222fc0cf067129f2fd8194c5e7d9730db03f0bac3956a42c38d1900f5a94a0c"
    "022100ea3a9071bf64fd197f7f02e0806d875f2f0b1b56cb1b49719030c6772c49b113"
)
GOLDEN_CIPHERTEXT = bytes.fromhex(
    "307802203e37c1c805a1345b0cb78063ee48c0a3ef52838edd19066e8b69be7e929fc55e"
    "02205ced42f2d08397fb3fc915ddbf12f242de2a8b71cca0c51998e9adfec79348e4"
    "042027daba7c5b72797ba6ed150505181b6e83b4dde57f98cd5bb6d78ed45d0f7ff3"
    "0410c89b0d2dca46076cb5d20d8abc2961a0"
)
GOLDEN_PLAINTEXT = b"0123456789abcdef"


def _pem_body(pem: bytes) -> bytes:
    return base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))


@pytest.fixture(scope="module")
def golden() -> SM2PrivateKey:
    return SM2PrivateKey.from_pem(GOLDEN_PRIVATE_PEM)


@pytest.fixture(scope="module")
def key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def other() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


# --------------------------------------------------------------------------- golden


def test_golden_keys_load_and_match(golden: SM2PrivateKey) -> None:
    public = SM2PublicKey.from_pem(GOLDEN_PUBLIC_PEM)
    assert golden.public_key() == public
    assert public.to_pem() == GOLDEN_PUBLIC_PEM
    assert public.to_der() == _pem_body(GOLDEN_PUBLIC_PEM)
    assert public.key_id() == sm3(_pem_body(GOLDEN_PUBLIC_PEM)).hex()
    assert golden.key_id() == public.key_id()
    assert re.fullmatch(r"[0-9a-f]{64}", public.key_id())
    assert public.point == b"\x04" + public.to_der()[-64:]


def test_golden_openssl_signature_verifies(golden: SM2PrivateKey) -> None:
    golden.public_key().verify(GOLDEN_SIG, GOLDEN_MESSAGE)


def test_golden_empty_id_signature_fails_default_verify(golden: SM2PrivateKey) -> None:
    """OpenSSL 3.0 without ``-pkeyopt distid:`` signs with an EMPTY id: not ours."""
    with pytest.raises(InvalidSignature):
        golden.public_key().verify(GOLDEN_SIG_EMPTY_ID, GOLDEN_MESSAGE)
    golden.public_key().verify(GOLDEN_SIG_EMPTY_ID, GOLDEN_MESSAGE, distid=b"")


def test_golden_openssl_ciphertext_decrypts(golden: SM2PrivateKey) -> None:
    assert golden.decrypt(GOLDEN_CIPHERTEXT) == GOLDEN_PLAINTEXT


def test_default_distid() -> None:
    assert DEFAULT_DISTID == b"1234567812345678"


# --------------------------------------------------------------------------- signatures


@settings(max_examples=15, deadline=None)
@given(message=st.binary(max_size=512))
def test_sign_verify_round_trip(key: SM2PrivateKey, message: bytes) -> None:
    signature = key.sign(message)
    assert signature[0] == 0x30 and len(signature) <= 72
    key.public_key().verify(signature, message)


def test_signatures_are_randomised(key: SM2PrivateKey) -> None:
    first, second = key.sign(b"m"), key.sign(b"m")
    assert first != second
    key.public_key().verify(first, b"m")
    key.public_key().verify(second, b"m")


def test_custom_distid(key: SM2PrivateKey) -> None:
    signature = key.sign(b"m", distid=b"ALICE123@YAHOO.COM")
    key.public_key().verify(signature, b"m", distid=b"ALICE123@YAHOO.COM")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, b"m")
    with pytest.raises(ValueError, match="distinguishing ID"):
        key.sign(b"m", distid=b"x" * 8192)


def _flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def _signature_tamper_cases() -> list[object]:
    sig = GOLDEN_SIG
    msg = GOLDEN_MESSAGE
    r_len = sig[3]
    return [
        pytest.param(sig, _flip(msg, 0), id="message bit flip"),
        pytest.param(sig, msg + b"!", id="message extended"),
        pytest.param(sig, msg[:-1], id="message truncated"),
        pytest.param(sig, b"", id="empty message"),
        pytest.param(_flip(sig, 10), msg, id="r bit flip"),
        pytest.param(_flip(sig, len(sig) - 1), msg, id="s bit flip"),
        pytest.param(_flip(sig, 0, 0x02), msg, id="sequence tag changed"),
        pytest.param(_flip(sig, 1), msg, id="sequence length changed"),
        pytest.param(_flip(sig, 3), msg, id="r length changed"),
        pytest.param(sig[:-1], msg, id="truncated by one byte"),
        pytest.param(sig[: len(sig) // 2], msg, id="truncated in half"),
        pytest.param(sig[:4], msg, id="truncated to header"),
        pytest.param(sig + b"\x00", msg, id="trailing byte"),
        pytest.param(b"", msg, id="empty signature"),
        pytest.param(b"\x00" * 70, msg, id="zeros"),
        pytest.param(b"\xff" * 72, msg, id="garbage"),
        pytest.param(b"\x30" * 300, msg, id="too long"),
        pytest.param(sig[4 + r_len + 2 :], msg, id="s only"),
        pytest.param(
            b"\x30\x44"
            + sig[4 + r_len : 4 + r_len + 2]
            + sig[4 + r_len + 2 :]
            + sig[2 : 4 + r_len],
            msg,
            id="r and s swapped",
        ),
        pytest.param(GOLDEN_SIG_EMPTY_ID, msg, id="empty-id signature"),
    ]


@pytest.mark.parametrize(("signature", "message"), _signature_tamper_cases())
def test_signature_tamper_raises(golden: SM2PrivateKey, signature: bytes, message: bytes) -> None:
    with pytest.raises(InvalidSignature):
        golden.public_key().verify(signature, message)


def test_wrong_key_raises(golden: SM2PrivateKey, other: SM2PrivateKey) -> None:
    with pytest.raises(InvalidSignature) as info:
        other.public_key().verify(GOLDEN_SIG, GOLDEN_MESSAGE)
    assert isinstance(info.value, VerificationError)


def test_verify_rejects_non_bytes(golden: SM2PrivateKey) -> None:
    with pytest.raises(TypeError):
        golden.public_key().verify("sig", GOLDEN_MESSAGE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        golden.sign("text")  # type: ignore[arg-type]


def test_failures_leave_backend_usable(golden: SM2PrivateKey) -> None:
    for bad in (b"\xff" * 72, b"", GOLDEN_SIG[:-3]):
        with pytest.raises(InvalidSignature):
            golden.public_key().verify(bad, GOLDEN_MESSAGE)
    with pytest.raises(KeyFormatError):
        SM2PublicKey.from_pem(b"junk")
    golden.public_key().verify(GOLDEN_SIG, GOLDEN_MESSAGE)
    golden.public_key().verify(golden.sign(b"after"), b"after")


# --------------------------------------------------------------------------- encryption


@pytest.mark.parametrize("size", [1, 16, 32, 100, 1000])
def test_encrypt_round_trip(key: SM2PrivateKey, size: int) -> None:
    plaintext = bytes(range(256))[:size] * (size // 256 + 1)
    plaintext = plaintext[:size]
    ciphertext = key.public_key().encrypt(plaintext)
    assert ciphertext[0] == 0x30  # ASN.1 SEQUENCE {x, y, hash, ciphertext}
    assert key.decrypt(ciphertext) == plaintext
    assert key.public_key().encrypt(plaintext) != ciphertext  # randomised


def test_encrypt_empty_plaintext_refused(key: SM2PrivateKey) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        key.public_key().encrypt(b"")


def _ciphertext_tamper_cases() -> list[object]:
    ct = GOLDEN_CIPHERTEXT
    return [
        pytest.param(_flip(ct, 10), id="C1 x bit flip"),
        pytest.param(_flip(ct, 45), id="C1 y bit flip"),
        pytest.param(_flip(ct, 80), id="C3 hash bit flip"),
        pytest.param(_flip(ct, len(ct) - 1), id="C2 bit flip"),
        pytest.param(_flip(ct, 1), id="sequence length changed"),
        pytest.param(ct[:-1], id="truncated by one byte"),
        pytest.param(ct[:40], id="truncated to C1 x"),
        pytest.param(ct + b"\x00", id="trailing byte"),
        pytest.param(b"\x30\x00", id="empty sequence"),
        pytest.param(b"garbage" * 20, id="garbage"),
        pytest.param(b"", id="empty"),
    ]


@pytest.mark.parametrize("ciphertext", _ciphertext_tamper_cases())
def test_ciphertext_tamper_raises(golden: SM2PrivateKey, ciphertext: bytes) -> None:
    with pytest.raises(DecryptionError):
        golden.decrypt(ciphertext)


def test_decrypt_with_wrong_key_raises(other: SM2PrivateKey) -> None:
    with pytest.raises(DecryptionError):
        other.decrypt(GOLDEN_CIPHERTEXT)


# --------------------------------------------------------------------------- PEM


def test_private_pem_round_trip(key: SM2PrivateKey) -> None:
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = SM2PrivateKey.from_pem(pem)
    assert again == key
    assert again.key_id() == key.key_id()
    assert SM2PrivateKey.from_pem(pem.decode()) == key  # str accepted


@pytest.mark.parametrize("password", [b"correct horse", "pässwörd", b"\x00\xff" * 40])
def test_encrypted_private_pem_round_trip(key: SM2PrivateKey, password: bytes | str) -> None:
    pem = key.to_pem(password)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert SM2PrivateKey.from_pem(pem, password) == key


def test_encrypted_pem_password_errors(key: SM2PrivateKey) -> None:
    pem = key.to_pem(b"secret")
    with pytest.raises(KeyPasswordError, match="password is required"):
        SM2PrivateKey.from_pem(pem)
    with pytest.raises(KeyPasswordError, match="wrong password"):
        SM2PrivateKey.from_pem(pem, b"Secret")
    with pytest.raises(KeyPasswordError, match="empty"):
        SM2PrivateKey.from_pem(pem, b"")
    with pytest.raises(KeyPasswordError, match="not encrypted"):
        SM2PrivateKey.from_pem(key.to_pem(), b"secret")
    with pytest.raises(ValueError, match="empty"):
        key.to_pem(b"")


def test_public_pem_round_trip(key: SM2PrivateKey) -> None:
    public = key.public_key()
    assert SM2PublicKey.from_pem(public.to_pem()) == public
    assert SM2PublicKey.from_pem(public.to_pem().decode()) == public
    assert SM2PublicKey.from_der(public.to_der()) == public


def test_compressed_point_gives_the_same_key_id(golden: SM2PrivateKey) -> None:
    point = golden.public_key().point
    compressed = bytes([2 + (point[-1] & 1)]) + point[1:33]
    der = bytes.fromhex("3039301306072a8648ce3d020106082a811ccf5501822d032200") + compressed
    public = SM2PublicKey.from_der(der)
    assert public == golden.public_key()
    assert public.key_id() == golden.key_id()
    assert public.to_der() == golden.public_key().to_der()
    public.verify(GOLDEN_SIG, GOLDEN_MESSAGE)


def _p256_private() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _p256_public() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _rsa_private() -> bytes:
    return rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _rsa_public() -> bytes:
    return (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _ed25519_private() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("make", "found"),
    [
        pytest.param(_p256_private, "prime256v1", id="P-256"),
        pytest.param(_rsa_private, "RSA", id="RSA"),
        pytest.param(_ed25519_private, "Ed25519", id="Ed25519"),
    ],
)
def test_non_sm2_private_key_refused(make: object, found: str) -> None:
    assert callable(make)
    with pytest.raises(UnsupportedKeyError, match=f"not an SM2 key.*{found}"):
        SM2PrivateKey.from_pem(make())


@pytest.mark.parametrize(
    ("make", "found"),
    [
        pytest.param(_p256_public, "prime256v1", id="P-256"),
        pytest.param(_rsa_public, "RSA", id="RSA"),
    ],
)
def test_non_sm2_public_key_refused(make: object, found: str) -> None:
    assert callable(make)
    with pytest.raises(UnsupportedKeyError, match=f"not an SM2 key.*{found}"):
        SM2PublicKey.from_pem(make())


def _truncated(pem: bytes) -> bytes:
    lines = pem.splitlines(keepends=True)
    return b"".join([lines[0], lines[1][:30] + b"\n", lines[-1]])


MALFORMED_PRIVATE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not a key at all", id="text"),
    pytest.param(b"\x00\xff" * 50, id="binary"),
    pytest.param(_truncated(GOLDEN_PRIVATE_PEM), id="truncated body"),
    pytest.param(GOLDEN_PRIVATE_PEM.replace(b"MIGH", b"MIGX"), id="corrupt body"),
    pytest.param(GOLDEN_PRIVATE_PEM[:-30], id="missing footer"),
    pytest.param(GOLDEN_PUBLIC_PEM, id="public key"),
    pytest.param(_pem_body(GOLDEN_PRIVATE_PEM), id="DER instead of PEM"),
]


@pytest.mark.parametrize("pem", MALFORMED_PRIVATE)
def test_malformed_private_pem(pem: bytes) -> None:
    with pytest.raises(KeyFormatError) as info:
        SM2PrivateKey.from_pem(pem)
    assert not isinstance(info.value, KeyPasswordError | UnsupportedKeyError)


MALFORMED_PUBLIC = [
    pytest.param(b"", id="empty"),
    pytest.param(b"junk", id="text"),
    pytest.param(_truncated(GOLDEN_PUBLIC_PEM), id="truncated body"),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"MFkw", b"MFkx"), id="corrupt body"),
    pytest.param(GOLDEN_PRIVATE_PEM, id="private key"),
    # A point not on the curve: last coordinate byte changed.
    pytest.param(
        b"-----BEGIN PUBLIC KEY-----\n"
        + base64.encodebytes(_flip(_pem_body(GOLDEN_PUBLIC_PEM), -1))
        + b"-----END PUBLIC KEY-----\n",
        id="point off the curve",
    ),
]


@pytest.mark.parametrize("pem", MALFORMED_PUBLIC)
def test_malformed_public_pem(pem: bytes) -> None:
    with pytest.raises(KeyFormatError):
        SM2PublicKey.from_pem(pem)


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(b"", id="empty"),
        pytest.param(_pem_body(GOLDEN_PUBLIC_PEM)[:-1], id="truncated"),
        pytest.param(_pem_body(GOLDEN_PUBLIC_PEM) + b"\x00", id="trailing byte"),
        pytest.param(
            bytes.fromhex("3019301306072a8648ce3d020106082a811ccf5501822d03020000"),
            id="point at infinity",
        ),
    ],
)
def test_malformed_public_der(der: bytes) -> None:
    with pytest.raises(KeyFormatError):
        SM2PublicKey.from_der(der)


def test_private_key_with_foreign_public_point_refused(
    golden: SM2PrivateKey, other: SM2PrivateKey
) -> None:
    der = _pem_body(GOLDEN_PRIVATE_PEM)
    assert der.endswith(golden.public_key().point)
    forged = der[:-65] + other.public_key().point
    pem = (
        b"-----BEGIN PRIVATE KEY-----\n"
        + base64.encodebytes(forged)
        + b"-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFormatError, match="does not match"):
        SM2PrivateKey.from_pem(pem)


def test_errors_are_crypto_errors() -> None:
    assert issubclass(KeyPasswordError, KeyFormatError)
    assert issubclass(UnsupportedKeyError, KeyFormatError)
    assert issubclass(KeyFormatError, CryptoError)
    assert issubclass(DecryptionError, CryptoError)
    assert issubclass(InvalidSignature, VerificationError)


# --------------------------------------------------------------------------- value semantics


def test_keys_are_immutable(key: SM2PrivateKey) -> None:
    public = key.public_key()
    with pytest.raises(AttributeError):
        public._der = b""
    with pytest.raises(AttributeError):
        key._pkey = None
    with pytest.raises(AttributeError):
        del public._der


def test_equality_and_hashing(key: SM2PrivateKey, other: SM2PrivateKey) -> None:
    same = SM2PrivateKey.from_pem(key.to_pem())
    assert same == key and hash(same) == hash(key)
    assert key != other
    assert {key.public_key(), same.public_key(), other.public_key()} == {
        key.public_key(),
        other.public_key(),
    }
    assert key.public_key() != key
    assert key != key.public_key()


def test_public_key_pickles_private_does_not(key: SM2PrivateKey) -> None:
    public = key.public_key()
    assert pickle.loads(pickle.dumps(public)) == public  # noqa: S301
    assert copy.deepcopy(public) == public
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_repr_names_the_key_but_not_the_secret(key: SM2PrivateKey) -> None:
    assert repr(key) == f"SM2PrivateKey(key_id={key.key_id()!r})"
    assert repr(key.public_key()) == f"SM2PublicKey(key_id={key.key_id()!r})"


def test_loading_is_cached() -> None:
    assert SM2PublicKey.from_pem(GOLDEN_PUBLIC_PEM) is SM2PublicKey.from_pem(GOLDEN_PUBLIC_PEM)


# --------------------------------------------------------------------------- strict PEM


def _armor(label: bytes, der: bytes) -> bytes:
    return (
        b"-----BEGIN "
        + label
        + b"-----\n"
        + base64.encodebytes(der)
        + b"-----END "
        + label
        + b"-----\n"
    )


def _long_form_length(der: bytes) -> bytes:
    """``der`` with its outer SEQUENCE length in (non-DER) long form."""
    assert der[0] == 0x30 and der[1] < 0x80
    return b"\x30\x81" + der[1:]


_OTHER_PUBLIC = SM2PrivateKey.generate().public_key().to_pem()
_PUBLIC_DER = _pem_body(GOLDEN_PUBLIC_PEM)
_PRIVATE_DER = _pem_body(GOLDEN_PRIVATE_PEM)

NOT_STRICT_PUBLIC = [
    pytest.param(GOLDEN_PUBLIC_PEM + b"junk", id="trailing junk"),
    pytest.param(GOLDEN_PUBLIC_PEM + b"junk\n", id="trailing junk line"),
    pytest.param(GOLDEN_PUBLIC_PEM + _OTHER_PUBLIC, id="a second PEM block"),
    pytest.param(GOLDEN_PUBLIC_PEM + GOLDEN_PUBLIC_PEM, id="the block twice"),
    pytest.param(b"hello\n" + GOLDEN_PUBLIC_PEM, id="leading junk"),
    pytest.param(
        GOLDEN_PUBLIC_PEM.replace(b"END PUBLIC KEY", b"END PRIVATE KEY"), id="mismatched labels"
    ),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"PUBLIC KEY", b"EC PUBLIC KEY"), id="unexpected label"),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"MFkw", b"MF!kw"), id="non-base64 character"),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"lw==", b"lx=="), id="non-zero base64 pad bits"),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"lw==", b"lw"), id="missing base64 padding"),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"lw==", b"lw==AAAA"), id="data after padding"),
    pytest.param(_armor(b"PUBLIC KEY", _PUBLIC_DER + b"\x00"), id="DER with a trailing byte"),
    pytest.param(_armor(b"PUBLIC KEY", _long_form_length(_PUBLIC_DER)), id="BER length"),
    pytest.param(
        GOLDEN_PUBLIC_PEM.replace(b"-----\n", b"-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
        id="PEM headers",
    ),
    pytest.param(GOLDEN_PUBLIC_PEM.replace(b"\n", b"\n\n", 2)[:-1], id="blank line in body"),
    pytest.param("-----BEGIN PUBLIC KEY-----\né\n-----END PUBLIC KEY-----\n", id="non-ASCII"),
    pytest.param("\ud800", id="lone surrogate"),
    pytest.param(GOLDEN_PUBLIC_PEM.decode() + "\udfff", id="trailing lone surrogate"),
]


@pytest.mark.parametrize("pem", NOT_STRICT_PUBLIC)
def test_public_pem_is_parsed_strictly(pem: bytes | str) -> None:
    with pytest.raises(KeyFormatError) as info:
        SM2PublicKey.from_pem(pem)
    assert not isinstance(info.value, UnsupportedKeyError)


def test_public_der_must_be_canonical() -> None:
    with pytest.raises(KeyFormatError, match="DER"):
        SM2PublicKey.from_der(_long_form_length(_PUBLIC_DER))


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param(GOLDEN_PUBLIC_PEM, id="as OpenSSL writes it"),
        pytest.param(b"\n \t" + GOLDEN_PUBLIC_PEM + b"\n\n  ", id="surrounding whitespace"),
        pytest.param(GOLDEN_PUBLIC_PEM.replace(b"\n", b"\r\n"), id="CRLF"),
        pytest.param(GOLDEN_PUBLIC_PEM.rstrip(b"\n"), id="no final newline"),
        pytest.param(_armor(b"PUBLIC KEY", _PUBLIC_DER), id="76-column lines"),
    ],
)
def test_strict_public_pem_still_takes_well_formed_keys(pem: bytes) -> None:
    assert SM2PublicKey.from_pem(pem).to_pem() == GOLDEN_PUBLIC_PEM


NOT_STRICT_PRIVATE = [
    pytest.param(GOLDEN_PRIVATE_PEM + b"junk", id="trailing junk"),
    pytest.param(GOLDEN_PRIVATE_PEM + GOLDEN_PUBLIC_PEM, id="a public key after it"),
    pytest.param(GOLDEN_PRIVATE_PEM + GOLDEN_PRIVATE_PEM, id="the block twice"),
    pytest.param(b"hello\n" + GOLDEN_PRIVATE_PEM, id="leading junk"),
    pytest.param(
        GOLDEN_PRIVATE_PEM.replace(b"END PRIVATE KEY", b"END EC PRIVATE KEY"),
        id="mismatched labels",
    ),
    pytest.param(GOLDEN_PRIVATE_PEM.replace(b"MIGH", b"MI*GH"), id="non-base64 character"),
    pytest.param(_armor(b"PRIVATE KEY", _PRIVATE_DER + b"\x00"), id="DER with a trailing byte"),
    pytest.param(_armor(b"RSA PRIVATE KEY", _PRIVATE_DER), id="unexpected label"),
]


@pytest.mark.parametrize("pem", NOT_STRICT_PRIVATE)
def test_private_pem_is_parsed_strictly(pem: bytes) -> None:
    with pytest.raises(KeyFormatError) as info:
        SM2PrivateKey.from_pem(pem)
    assert not isinstance(info.value, KeyPasswordError | UnsupportedKeyError)


def test_strict_private_pem_still_takes_well_formed_keys(key: SM2PrivateKey) -> None:
    assert SM2PrivateKey.from_pem(b"\n" + GOLDEN_PRIVATE_PEM.replace(b"\n", b"\r\n")) == (
        SM2PrivateKey.from_pem(GOLDEN_PRIVATE_PEM)
    )
    encrypted = key.to_pem(b"pw")
    assert SM2PrivateKey.from_pem(encrypted + b"\n", b"pw") == key
    with pytest.raises(KeyFormatError):
        SM2PrivateKey.from_pem(encrypted + b"junk", b"pw")


def test_private_key_text_that_is_not_unicode_is_a_key_error(key: SM2PrivateKey) -> None:
    """A lone surrogate (which JSON can carry) cannot even be encoded: still a typed error."""
    pem = key.to_pem(b"pw").decode()
    for text in ("\ud800", pem.replace("-----\n", "-----\n\udfff", 1)):
        with pytest.raises(KeyFormatError):
            SM2PrivateKey.from_pem(text, b"pw")
    with pytest.raises(KeyFormatError):
        SM2PrivateKey.from_pem(pem, "p\ud800")
