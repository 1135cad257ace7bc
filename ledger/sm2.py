"""SM2 (GB/T 32918, GM/T 0003 / GM/T 0009): keys, signatures, public-key encryption.

This is the only module that touches the SM2 backend, Tongsuo through
``tongsuopy`` (its cffi binding: tongsuopy 1.0.1 has no public API for SM2
encryption nor for choosing the distinguishing ID). Swapping the backend means
rewriting this file only.

* Keys: :class:`SM2PrivateKey` / :class:`SM2PublicKey`, immutable wrappers
  around a loaded ``EVP_PKEY`` (parsed once, reused for every operation).
  Private keys travel as PKCS#8 PEM (optionally password-encrypted, PBES2 with
  SM4-CBC), public keys as SubjectPublicKeyInfo PEM/DER.
* A key's *key id* is the hex SM3 of its canonical DER SubjectPublicKeyInfo
  (uncompressed point): that is how the exchange names actors.
* Signatures: SM2 with SM3, ``e = SM3(Z || M)`` where ``Z`` is computed with
  the distinguishing ID (default ``1234567812345678``, GM/T 0009), DER
  ``SEQUENCE {r, s}``. Interoperates with
  ``openssl pkeyutl -sign|-verify -rawin -digest sm3 -pkeyopt distid:1234567812345678``.
  ``Z`` is computed here, explicitly, and cached per key: the ID never depends
  on a backend default.
* Encryption: SM2 public-key encryption with SM3, GM/T 0009 ASN.1 ciphertext
  ``SEQUENCE {x, y, hash, ciphertext}`` (C1C3C2) as OpenSSL emits; meant for
  wrapping symmetric keys (see :mod:`ledger.envelope`).

Failures raise :mod:`ledger.errors` types, never a backend exception.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Any, Final, NoReturn

from tongsuopy.backends.tongsuo.binding import Binding

from ledger.errors import (
    CryptoError,
    DecryptionError,
    InvalidSignature,
    KeyFormatError,
    KeyPasswordError,
    UnsupportedKeyError,
)
from ledger.sm3 import SM3Hasher, sm3

__all__ = [
    "DEFAULT_DISTID",
    "SM2PrivateKey",
    "SM2PublicKey",
]

DEFAULT_DISTID: Final = b"1234567812345678"
"""The default SM2 distinguishing ID (user ID) of GM/T 0009."""

_binding = Binding()
_lib: Any = _binding.lib
_ffi: Any = _binding.ffi
_NULL: Any = _ffi.NULL
_PASSWORD_CB: Any = _ffi.addressof(_lib._original_lib, "Cryptography_pem_password_cb")
_NID_SM2: Final[int] = _lib.OBJ_sn2nid(b"SM2")
_EVP_PKEY_SM2: Final[int] = _lib.EVP_PKEY_SM2
_PKCS8_CIPHER: Any = _lib.EVP_get_cipherbyname(b"sm4-cbc")

# Curve parameters of the SM2 recommended curve (GB/T 32918.5), as they enter Z.
_CURVE_A: Final = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
_CURVE_B: Final = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
_CURVE_GX: Final = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
_CURVE_GY: Final = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")

# SubjectPublicKeyInfo {id-ecPublicKey, sm2p256v1 (1.2.156.10197.1.301)} up to
# the BIT STRING holding the 65-byte uncompressed point.
_SPKI_PREFIX: Final = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_POINT_SIZE: Final = 65
_MAX_SIGNATURE_SIZE: Final = 72  # DER SEQUENCE of two 33-byte INTEGERs
_MIN_SIGNATURE_SIZE: Final = 8
_MAX_PASSWORD_SIZE: Final = 1023
_MAX_DISTID_SIZE: Final = 8191  # ENTL is a 16-bit count of bits

_PUBLIC_LABELS: Final = ("PUBLIC KEY",)
_PRIVATE_LABELS: Final = (
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY",
    "SM2 PRIVATE KEY",
)
_TRADITIONAL_LABELS: Final = ("EC PRIVATE KEY", "SM2 PRIVATE KEY")
"""SEC1 private keys, which OpenSSL may encrypt with RFC 1421 headers (``Proc-Type``)."""
_PEM_BEGIN: Final = re.compile(r"-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----")
_PEM_END: Final = re.compile(r"-----END ([A-Z0-9]+(?: [A-Z0-9]+)*)-----")
_PEM_HEADER: Final = re.compile(r"(Proc-Type|DEK-Info): [ -~]+")
_BASE64_TEXT: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")


# --------------------------------------------------------------------------- helpers


def _drain_errors() -> str:
    """Empty the backend's error queue; return the first reason, if readable."""
    first = ""
    while code := _lib.ERR_get_error():
        if not first:
            reason = _lib.ERR_reason_error_string(code)
            if reason != _NULL:
                first = _ffi.string(reason).decode("ascii", "replace")
    return first


def _fail(exc_type: type[CryptoError], message: str) -> NoReturn:
    reason = _drain_errors()
    raise exc_type(f"{message} ({reason})" if reason else message)


def _bio_read(data: bytes, read: Any) -> tuple[Any, bool]:
    """Run ``read(bio)`` over a memory BIO on ``data``.

    Returns the result and whether the BIO was consumed to its end.
    """
    buf = _ffi.from_buffer(data)
    bio = _lib.BIO_new_mem_buf(buf, len(data))
    if bio == _NULL:
        _fail(CryptoError, "out of memory")
    try:
        result = read(bio)
        consumed = _lib.BIO_ctrl_pending(bio) == 0
    finally:
        _lib.BIO_free(bio)
    return result, consumed


def _bio_write(write: Any) -> bytes:
    """Run ``write(bio)`` into a fresh memory BIO and return what it wrote."""
    bio = _lib.BIO_new(_lib.BIO_s_mem())
    if bio == _NULL:
        _fail(CryptoError, "out of memory")
    try:
        if write(bio) != 1:
            _fail(CryptoError, "key serialisation failed")
        ptr = _ffi.new("char **")
        size = _lib.BIO_get_mem_data(bio, ptr)
        out: bytes = _ffi.buffer(ptr[0], size)[:]
        return out
    finally:
        _lib.BIO_free(bio)


def _as_bytes(data: bytes | str, what: str) -> bytes:
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no text a key could be made of
            raise KeyFormatError(f"{what} is not valid Unicode text") from None
    if isinstance(data, bytes):
        return data
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


def _describe(pkey: Any) -> str:
    kind = _lib.EVP_PKEY_id(pkey)
    if kind == _lib.EVP_PKEY_RSA:
        return "an RSA key"
    if kind == _lib.EVP_PKEY_EC:
        ec_key = _lib.EVP_PKEY_get1_EC_KEY(pkey)
        if ec_key != _NULL:
            try:
                nid = _lib.EC_GROUP_get_curve_name(_lib.EC_KEY_get0_group(ec_key))
            finally:
                _lib.EC_KEY_free(ec_key)
            if nid != _lib.NID_undef:
                name = _ffi.string(_lib.OBJ_nid2sn(nid)).decode("ascii", "replace")
                return f"an EC key on curve {name}"
        return "an EC key on a non-SM2 curve"
    names = {
        _lib.EVP_PKEY_DSA: "a DSA key",
        _lib.EVP_PKEY_ED25519: "an Ed25519 key",
        _lib.EVP_PKEY_ED448: "an Ed448 key",
        _lib.EVP_PKEY_X25519: "an X25519 key",
        _lib.EVP_PKEY_X448: "an X448 key",
    }
    return names.get(kind, f"a key of type {kind}")


def _adopt_sm2(pkey: Any) -> Any:
    """Take ownership of ``pkey`` (freed by GC); insist that it is an SM2 key."""
    pkey = _ffi.gc(pkey, _lib.EVP_PKEY_free)
    if not _lib.EVP_PKEY_is_sm2(pkey):
        _drain_errors()
        raise UnsupportedKeyError(f"not an SM2 key: found {_describe(pkey)}")
    if _lib.EVP_PKEY_id(pkey) != _EVP_PKEY_SM2:
        _lib.EVP_PKEY_set_alias_type(pkey, _EVP_PKEY_SM2)
    return pkey


def _public_point(pkey: Any, *, check_private: bool = False) -> bytes:
    """The 65-byte uncompressed public point of an SM2 ``EVP_PKEY``.

    With ``check_private``, also check that the point is ``d·G`` for the
    private scalar ``d`` (a PKCS#8 file may carry an inconsistent point).
    """
    ec_key = _lib.EVP_PKEY_get1_EC_KEY(pkey)
    if ec_key == _NULL:
        _fail(KeyFormatError, "not a usable EC key")
    try:
        group = _lib.EC_KEY_get0_group(ec_key)
        point = _lib.EC_KEY_get0_public_key(ec_key)
        if point == _NULL or _lib.EC_POINT_is_at_infinity(group, point):
            _fail(KeyFormatError, "the public key is missing or the point at infinity")
        if check_private:
            _check_keypair(group, ec_key, point)
        buf = _ffi.new("unsigned char[]", _POINT_SIZE)
        size = _lib.EC_POINT_point2oct(
            group, point, _lib.POINT_CONVERSION_UNCOMPRESSED, buf, _POINT_SIZE, _NULL
        )
        if size != _POINT_SIZE:
            _fail(KeyFormatError, "cannot encode the public point")
        out: bytes = _ffi.buffer(buf, _POINT_SIZE)[:]
        return out
    finally:
        _lib.EC_KEY_free(ec_key)


def _check_keypair(group: Any, ec_key: Any, point: Any) -> None:
    scalar = _lib.EC_KEY_get0_private_key(ec_key)
    if scalar == _NULL:
        _fail(KeyFormatError, "the private key has no private scalar")
    expected = _lib.EC_POINT_new(group)
    if expected == _NULL:
        _fail(CryptoError, "out of memory")
    try:
        if _lib.EC_POINT_mul(group, expected, scalar, _NULL, _NULL, _NULL) != 1:
            _fail(KeyFormatError, "invalid private scalar")
        if _lib.EC_POINT_cmp(group, expected, point, _NULL) != 0:
            _drain_errors()
            raise KeyFormatError("the private key's public point does not match its scalar")
    finally:
        _lib.EC_POINT_free(expected)


def _z_value(point: bytes, distid: bytes) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2 §5.5."""
    if len(distid) > _MAX_DISTID_SIZE:
        raise ValueError(f"distinguishing ID longer than {_MAX_DISTID_SIZE} bytes")
    entl = (len(distid) * 8).to_bytes(2, "big")
    return sm3(entl + distid + _CURVE_A + _CURVE_B + _CURVE_GX + _CURVE_GY + point[1:])


def _message_digest(z: bytes, data: bytes) -> bytes:
    hasher = SM3Hasher()
    hasher.update(z)
    hasher.update(data)
    return hasher.digest()


def _is_one_der_sequence(data: bytes) -> bool:
    """Whether ``data`` is exactly one DER SEQUENCE (tag, length, contents; no trailer)."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        return len(data) == 2 + first
    count = first & 0x7F
    if not 1 <= count <= 4 or len(data) < 2 + count:
        return False
    length = int.from_bytes(data[2 : 2 + count], "big")
    return length >= 0x80 and len(data) == 2 + count + length


def _pem_block(data: bytes, labels: tuple[str, ...]) -> tuple[str, bool, bytes]:
    """The label, whether it is encrypted with RFC 1421 headers, and the bytes of the
    one PEM block ``data`` holds, parsed strictly (RFC 7468 strict, plus the headers
    OpenSSL writes for an encrypted SEC1 key).

    Nothing but whitespace before or after the block; the BEGIN and END labels
    equal and one of ``labels``; no blank line inside; the body canonical base64
    (only its alphabet, the padding it needs, zero pad bits); unless encrypted,
    exactly one DER SEQUENCE with nothing after it. Parsers that take the first
    block and skip the rest (OpenSSL's) would let one key be written in endless
    ways, or smuggle text next to a key. Raises :class:`KeyFormatError`.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFormatError("a PEM key must be ASCII text") from None
    lines = [line.rstrip(" \t\r") for line in text.strip(" \t\r\n").split("\n")]
    begin = _PEM_BEGIN.fullmatch(lines[0])
    end = _PEM_END.fullmatch(lines[-1]) if len(lines) > 1 else None
    if begin is None or end is None:
        raise KeyFormatError(
            "not one PEM block: expected -----BEGIN …----- first and -----END …----- last, "
            "with nothing but whitespace around them"
        )
    label = begin.group(1)
    if end.group(1) != label:
        raise KeyFormatError(f"the PEM block begins as {label} but ends as {end.group(1)}")
    if label not in labels:
        raise KeyFormatError(f"expected a PEM {' or '.join(labels)}, got {label}")
    body = lines[1:-1]
    encrypted = False
    if body and _PEM_HEADER.fullmatch(body[0]) and label in _TRADITIONAL_LABELS:
        blank = body.index("") if "" in body else len(body)
        headers = body[:blank]
        if not all(_PEM_HEADER.fullmatch(h) for h in headers) or blank == len(body):
            raise KeyFormatError("malformed PEM headers")
        encrypted, body = True, body[blank + 1 :]
    if "" in body:
        raise KeyFormatError("a blank line inside the PEM body")
    joined = "".join(body)
    if not _BASE64_TEXT.fullmatch(joined):
        raise KeyFormatError("the PEM body is not base64 (another character, or a second block)")
    try:
        der = base64.b64decode(joined, validate=True)
    except binascii.Error as exc:
        raise KeyFormatError(f"the PEM body is not valid base64 ({exc})") from None
    if base64.b64encode(der).decode("ascii") != joined:
        raise KeyFormatError("the PEM body is not canonical base64 (non-zero pad bits)")
    if not encrypted and not _is_one_der_sequence(der):
        raise KeyFormatError("the PEM body is not exactly one DER SEQUENCE")
    return label, encrypted, der


def _pem_armor(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )


def _load_public_pkey(der: bytes) -> Any:
    pkey, consumed = _bio_read(der, lambda bio: _lib.d2i_PUBKEY_bio(bio, _NULL))
    if pkey == _NULL:
        _fail(KeyFormatError, "not a DER SubjectPublicKeyInfo")
    pkey = _adopt_sm2(pkey)
    if not consumed:
        raise KeyFormatError("trailing bytes after the DER SubjectPublicKeyInfo")
    return pkey


# --------------------------------------------------------------------------- keys


class SM2PublicKey:
    """An SM2 public key: verify signatures, encrypt to it. Immutable, hashable.

    Build with :meth:`from_pem` / :meth:`from_der` (results are cached: loading
    the same key twice parses it once) or :meth:`SM2PrivateKey.public_key`.
    """

    __slots__ = ("_der", "_key_id", "_pkey", "_point", "_z")

    _der: bytes
    _key_id: str
    _pkey: Any
    _point: bytes
    _z: bytes

    def __init__(self, pkey: Any, point: bytes) -> None:
        """Internal: use :meth:`from_pem`, :meth:`from_der` or ``public_key()``."""
        der = _SPKI_PREFIX + point
        object.__setattr__(self, "_pkey", pkey)
        object.__setattr__(self, "_point", point)
        object.__setattr__(self, "_der", der)
        object.__setattr__(self, "_key_id", sm3(der).hex())
        object.__setattr__(self, "_z", _z_value(point, DEFAULT_DISTID))

    # -- construction / serialisation

    @classmethod
    def from_pem(cls, data: bytes | str) -> SM2PublicKey:
        """Load a SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``): exactly one
        block, nothing around it but whitespace, canonical base64 of canonical DER.

        Raises :class:`KeyFormatError` (malformed) or
        :class:`UnsupportedKeyError` (a key, but not SM2).
        """
        return _public_from_pem(_as_bytes(data, "PEM data"))

    @classmethod
    def from_der(cls, data: bytes) -> SM2PublicKey:
        """Load a DER SubjectPublicKeyInfo (compressed points accepted); it must be
        DER (re-encode to the same bytes), with nothing after it."""
        return _public_from_der(_as_bytes(data, "DER data"))

    def to_der(self) -> bytes:
        """The canonical DER SubjectPublicKeyInfo (named curve, uncompressed point)."""
        return self._der

    def to_pem(self) -> bytes:
        """The canonical SubjectPublicKeyInfo PEM."""
        return _pem_armor("PUBLIC KEY", self._der)

    def key_id(self) -> str:
        """Hex SM3 of :meth:`to_der`: the exchange's name for this key's holder."""
        return self._key_id

    @property
    def point(self) -> bytes:
        """The 65-byte uncompressed point ``04 || x || y``."""
        return self._point

    # -- operations

    def verify(self, signature: bytes, data: bytes, *, distid: bytes = DEFAULT_DISTID) -> None:
        """Check a DER SM2/SM3 ``signature`` over ``data``.

        Raises :class:`InvalidSignature` if it does not verify, including a
        malformed, truncated or non-DER signature. Returns ``None`` otherwise.
        """
        if not isinstance(signature, bytes) or not isinstance(data, bytes):
            raise TypeError("signature and data must be bytes")
        if not _MIN_SIGNATURE_SIZE <= len(signature) <= _MAX_SIGNATURE_SIZE:
            raise InvalidSignature("malformed SM2 signature (bad length)")
        z = self._z if distid == DEFAULT_DISTID else _z_value(self._point, distid)
        digest = _message_digest(z, data)
        ctx = _lib.EVP_PKEY_CTX_new(self._pkey, _NULL)
        if ctx == _NULL:
            _fail(CryptoError, "cannot create a verification context")
        try:
            if _lib.EVP_PKEY_verify_init(ctx) != 1:
                _fail(CryptoError, "cannot initialise SM2 verification")
            result = _lib.EVP_PKEY_verify(ctx, signature, len(signature), digest, len(digest))
        finally:
            _lib.EVP_PKEY_CTX_free(ctx)
        if result != 1:
            _drain_errors()
            raise InvalidSignature("SM2 signature does not verify")

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2-encrypt ``plaintext`` (non-empty, meant to be short, e.g. a key).

        Returns GM/T 0009 ASN.1 DER ``SEQUENCE {x, y, hash, ciphertext}``.
        """
        if not isinstance(plaintext, bytes):
            raise TypeError("plaintext must be bytes")
        if not plaintext:
            raise ValueError("SM2 encryption needs a non-empty plaintext")
        ctx = _lib.EVP_PKEY_CTX_new(self._pkey, _NULL)
        if ctx == _NULL:
            _fail(CryptoError, "cannot create an encryption context")
        try:
            if _lib.EVP_PKEY_encrypt_init(ctx) != 1:
                _fail(CryptoError, "cannot initialise SM2 encryption")
            size = _ffi.new("size_t *")
            if _lib.EVP_PKEY_encrypt(ctx, _NULL, size, plaintext, len(plaintext)) != 1:
                _fail(CryptoError, "SM2 encryption failed")
            buf = _ffi.new("unsigned char[]", size[0])
            if _lib.EVP_PKEY_encrypt(ctx, buf, size, plaintext, len(plaintext)) != 1:
                _fail(CryptoError, "SM2 encryption failed")
            out: bytes = _ffi.buffer(buf, size[0])[:]
            return out
        finally:
            _lib.EVP_PKEY_CTX_free(ctx)

    # -- value semantics

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SM2PublicKey):
            return NotImplemented
        return self._der == other._der

    def __hash__(self) -> int:
        return hash(self._der)

    def __repr__(self) -> str:
        return f"SM2PublicKey(key_id={self._key_id!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (SM2PublicKey.from_der, (self._der,))


@functools.lru_cache(maxsize=4096)
def _public_from_der(der: bytes) -> SM2PublicKey:
    pkey = _load_public_pkey(der)
    point = _public_point(pkey)
    if _bio_write(lambda bio: _lib.i2d_PUBKEY_bio(bio, pkey)) != der:
        raise KeyFormatError("not DER: the SubjectPublicKeyInfo re-encodes to other bytes")
    return SM2PublicKey(pkey, point)


@functools.lru_cache(maxsize=4096)
def _public_from_pem(pem: bytes) -> SM2PublicKey:
    label, _, der = _pem_block(pem, _PUBLIC_LABELS + _PRIVATE_LABELS)
    if label != "PUBLIC KEY":
        raise KeyFormatError("expected a public key PEM, got a private key")
    return _public_from_der(der)


class SM2PrivateKey:
    """An SM2 private key: sign, decrypt. Immutable; never printed.

    Build with :meth:`generate` or :meth:`from_pem`.
    """

    __slots__ = ("_pkey", "_public", "_sig_size")

    _pkey: Any
    _public: SM2PublicKey
    _sig_size: int

    def __init__(self, pkey: Any) -> None:
        """Internal: use :meth:`generate` or :meth:`from_pem`."""
        point = _public_point(pkey, check_private=True)
        object.__setattr__(self, "_pkey", pkey)
        public = SM2PublicKey(_load_public_pkey(_SPKI_PREFIX + point), point)  # not cached
        object.__setattr__(self, "_public", public)
        object.__setattr__(self, "_sig_size", max(_lib.EVP_PKEY_size(pkey), _MAX_SIGNATURE_SIZE))

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        """A fresh key pair from the backend's CSPRNG."""
        ec_key = _lib.EC_KEY_new_by_curve_name(_NID_SM2)
        if ec_key == _NULL:
            _fail(CryptoError, "SM2 curve unavailable")
        try:
            _lib.EC_KEY_set_asn1_flag(ec_key, _lib.OPENSSL_EC_NAMED_CURVE)
            if _lib.EC_KEY_generate_key(ec_key) != 1:
                _fail(CryptoError, "SM2 key generation failed")
            pkey = _lib.EVP_PKEY_new()
            if pkey == _NULL:
                _fail(CryptoError, "out of memory")
            pkey = _ffi.gc(pkey, _lib.EVP_PKEY_free)
            if _lib.EVP_PKEY_set1_EC_KEY(pkey, ec_key) != 1:
                _fail(CryptoError, "SM2 key generation failed")
        finally:
            _lib.EC_KEY_free(ec_key)
        _lib.EVP_PKEY_set_alias_type(pkey, _EVP_PKEY_SM2)
        return cls(pkey)

    @classmethod
    def from_pem(cls, data: bytes | str, password: bytes | str | None = None) -> SM2PrivateKey:
        """Load a PEM private key (PKCS#8, encrypted PKCS#8, or legacy EC): exactly one
        block, nothing around it but whitespace, canonical base64 of one DER SEQUENCE.

        Raises :class:`KeyPasswordError` (encrypted and no/wrong password, or a
        password for an unencrypted key), :class:`UnsupportedKeyError` (not
        SM2) or :class:`KeyFormatError` (anything else malformed).
        """
        pem = _as_bytes(data, "PEM data")
        label, _, _ = _pem_block(pem, _PUBLIC_LABELS + _PRIVATE_LABELS)
        if label == "PUBLIC KEY":
            raise KeyFormatError("expected a private key PEM, got a public key")
        if label == "SM2 PRIVATE KEY":
            # OpenSSL 3's label for a traditional (SEC1) SM2 key; Tongsuo knows it as EC.
            pem = pem.replace(b" SM2 PRIVATE KEY-----", b" EC PRIVATE KEY-----")
        userdata = _ffi.new("CRYPTOGRAPHY_PASSWORD_DATA *")
        password_buf = None
        if password is not None:
            secret = _as_bytes(password, "password")
            if not secret:
                raise KeyPasswordError("the password is empty")
            if len(secret) > _MAX_PASSWORD_SIZE:
                raise KeyPasswordError(f"passwords longer than {_MAX_PASSWORD_SIZE} bytes")
            password_buf = _ffi.from_buffer(secret)
            userdata.password = password_buf
            userdata.length = len(secret)
        pkey, _ = _bio_read(
            pem, lambda bio: _lib.PEM_read_bio_PrivateKey(bio, _NULL, _PASSWORD_CB, userdata)
        )
        del password_buf
        if pkey == _NULL:
            if userdata.called:
                _drain_errors()
                if userdata.error == -1:
                    raise KeyPasswordError("the private key is encrypted: a password is required")
                if userdata.error == -2:
                    raise KeyPasswordError("the password is too long")
                raise KeyPasswordError("wrong password (or a corrupt encrypted private key)")
            _fail(KeyFormatError, "not a PEM private key")
        pkey = _adopt_sm2(pkey)
        if password is not None and not userdata.called:
            raise KeyPasswordError("a password was given but the private key is not encrypted")
        return cls(pkey)

    def to_pem(self, password: bytes | str | None = None) -> bytes:
        """PKCS#8 PEM; with ``password``, encrypted (PBES2, PBKDF2, SM4-CBC)."""
        if password is None:
            return _bio_write(
                lambda bio: _lib.PEM_write_bio_PKCS8PrivateKey(
                    bio, self._pkey, _NULL, _NULL, 0, _NULL, _NULL
                )
            )
        secret = _as_bytes(password, "password")
        if not secret:
            raise ValueError("the password is empty")
        if len(secret) > _MAX_PASSWORD_SIZE:
            raise ValueError(f"passwords longer than {_MAX_PASSWORD_SIZE} bytes")
        buf = _ffi.from_buffer(secret)
        return _bio_write(
            lambda bio: _lib.PEM_write_bio_PKCS8PrivateKey(
                bio, self._pkey, _PKCS8_CIPHER, buf, len(secret), _NULL, _NULL
            )
        )

    def public_key(self) -> SM2PublicKey:
        return self._public

    def key_id(self) -> str:
        """The key id of :meth:`public_key`."""
        return self._public.key_id()

    # -- operations

    def sign(self, data: bytes, *, distid: bytes = DEFAULT_DISTID) -> bytes:
        """DER SM2 signature over SM3(Z || ``data``); randomised (fresh k)."""
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        public = self._public
        z = public._z if distid == DEFAULT_DISTID else _z_value(public._point, distid)
        digest = _message_digest(z, data)
        ctx = _lib.EVP_PKEY_CTX_new(self._pkey, _NULL)
        if ctx == _NULL:
            _fail(CryptoError, "cannot create a signing context")
        try:
            if _lib.EVP_PKEY_sign_init(ctx) != 1:
                _fail(CryptoError, "cannot initialise SM2 signing")
            size = _ffi.new("size_t *", self._sig_size)
            buf = _ffi.new("unsigned char[]", self._sig_size)
            if _lib.EVP_PKEY_sign(ctx, buf, size, digest, len(digest)) != 1:
                _fail(CryptoError, "SM2 signing failed")
            out: bytes = _ffi.buffer(buf, size[0])[:]
            return out
        finally:
            _lib.EVP_PKEY_CTX_free(ctx)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt a GM/T 0009 ASN.1 SM2 ciphertext.

        Raises :class:`DecryptionError` if it is malformed, tampered with or
        not for this key.
        """
        if not isinstance(ciphertext, bytes):
            raise TypeError("ciphertext must be bytes")
        if not _is_one_der_sequence(ciphertext):
            raise DecryptionError("malformed SM2 ciphertext (not one DER SEQUENCE)")
        ctx = _lib.EVP_PKEY_CTX_new(self._pkey, _NULL)
        if ctx == _NULL:
            _fail(CryptoError, "cannot create a decryption context")
        try:
            if _lib.EVP_PKEY_decrypt_init(ctx) != 1:
                _fail(CryptoError, "cannot initialise SM2 decryption")
            size = _ffi.new("size_t *")
            if _lib.EVP_PKEY_decrypt(ctx, _NULL, size, ciphertext, len(ciphertext)) != 1:
                _drain_errors()
                raise DecryptionError("malformed SM2 ciphertext")
            buf = _ffi.new("unsigned char[]", max(size[0], 1))
            if _lib.EVP_PKEY_decrypt(ctx, buf, size, ciphertext, len(ciphertext)) != 1:
                _drain_errors()
                raise DecryptionError("SM2 ciphertext does not decrypt with this key")
            out: bytes = _ffi.buffer(buf, size[0])[:]
            return out
        finally:
            _lib.EVP_PKEY_CTX_free(ctx)

    # -- value semantics

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SM2PrivateKey):
            return NotImplemented
        return self._public == other._public

    def __hash__(self) -> int:
        return hash(("SM2PrivateKey", self._public))

    def __repr__(self) -> str:
        return f"SM2PrivateKey(key_id={self.key_id()!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("SM2PrivateKey cannot be pickled; use to_pem(password)")
