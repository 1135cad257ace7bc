"""Interop with the reference implementation, the ``openssl`` CLI (OpenSSL 3), both ways.

Skipped (with the reason) only when ``openssl`` is missing or has no SM2.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from ledger import envelope, sm4
from ledger.errors import InvalidSignature, KeyPasswordError
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import sm3

Run = Callable[..., subprocess.CompletedProcess[bytes]]

DISTID = "distid:1234567812345678"
MESSAGE = "山城 data exchange: interop message\n".encode() * 7


def _find_openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl CLI not installed")
    probe = subprocess.run(
        [path, "genpkey", "-algorithm", "SM2"], capture_output=True, check=False, timeout=30
    )
    if probe.returncode != 0 or b"PRIVATE KEY" not in probe.stdout:
        pytest.skip("this openssl has no SM2 support")
    return path


@pytest.fixture(scope="module")
def openssl() -> str:
    return _find_openssl()


@pytest.fixture
def run(openssl: str, tmp_path: Path) -> Run:
    def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [openssl, *args], cwd=tmp_path, capture_output=True, check=False, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)} failed: {result.stderr.decode()}")
        return result

    return _run


@pytest.fixture
def ours(tmp_path: Path) -> SM2PrivateKey:
    key = SM2PrivateKey.generate()
    (tmp_path / "ours.pem").write_bytes(key.to_pem())
    (tmp_path / "ours.pub").write_bytes(key.public_key().to_pem())
    (tmp_path / "msg").write_bytes(MESSAGE)
    return key


@pytest.fixture
def theirs(run: Run, tmp_path: Path) -> SM2PrivateKey:
    run("genpkey", "-algorithm", "SM2", "-out", "theirs.pem")
    run("pkey", "-in", "theirs.pem", "-pubout", "-out", "theirs.pub")
    (tmp_path / "msg").write_bytes(MESSAGE)
    return SM2PrivateKey.from_pem((tmp_path / "theirs.pem").read_bytes())


# --------------------------------------------------------------------------- signatures


def test_our_signature_verifies_in_openssl(run: Run, ours: SM2PrivateKey, tmp_path: Path) -> None:
    (tmp_path / "sig").write_bytes(ours.sign(MESSAGE))
    verify = ("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", "ours.pub")
    result = run(*verify, "-pkeyopt", DISTID, "-in", "msg", "-sigfile", "sig")
    assert b"Signature Verified Successfully" in result.stdout
    # OpenSSL 3.0 without distid uses an EMPTY id: our signature must not pass.
    assert run(*verify, "-in", "msg", "-sigfile", "sig", check=False).returncode != 0
    # Nor with a tampered message.
    (tmp_path / "msg2").write_bytes(MESSAGE + b"x")
    bad = run(*verify, "-pkeyopt", DISTID, "-in", "msg2", "-sigfile", "sig", check=False)
    assert bad.returncode != 0


def test_openssl_signature_verifies_with_us(
    run: Run, theirs: SM2PrivateKey, tmp_path: Path
) -> None:
    sign = ("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", "theirs.pem", "-in", "msg")
    run(*sign, "-pkeyopt", DISTID, "-out", "sig")
    public = SM2PublicKey.from_pem((tmp_path / "theirs.pub").read_bytes())
    public.verify((tmp_path / "sig").read_bytes(), MESSAGE)
    with pytest.raises(InvalidSignature):
        public.verify((tmp_path / "sig").read_bytes(), MESSAGE[:-1])
    # Signed with OpenSSL 3.0's default (empty) id: fails our default verify.
    run(*sign, "-out", "sig_empty_id")
    with pytest.raises(InvalidSignature):
        public.verify((tmp_path / "sig_empty_id").read_bytes(), MESSAGE)
    public.verify((tmp_path / "sig_empty_id").read_bytes(), MESSAGE, distid=b"")


# --------------------------------------------------------------------------- encryption


def test_our_ciphertext_decrypts_in_openssl(run: Run, ours: SM2PrivateKey, tmp_path: Path) -> None:
    secret = os.urandom(16)
    (tmp_path / "ct").write_bytes(ours.public_key().encrypt(secret))
    result = run("pkeyutl", "-decrypt", "-inkey", "ours.pem", "-in", "ct")
    assert result.stdout == secret


def test_openssl_ciphertext_decrypts_with_us(
    run: Run, theirs: SM2PrivateKey, tmp_path: Path
) -> None:
    secret = os.urandom(48)
    (tmp_path / "plain").write_bytes(secret)
    run("pkeyutl", "-encrypt", "-pubin", "-inkey", "theirs.pub", "-in", "plain", "-out", "ct")
    assert theirs.decrypt((tmp_path / "ct").read_bytes()) == secret


def test_envelope_key_unwraps_in_openssl(run: Run, ours: SM2PrivateKey, tmp_path: Path) -> None:
    env = envelope.seal(ours.public_key(), b"dataset bytes", b"order:1")
    (tmp_path / "wrapped").write_bytes(env.wrapped_key)
    key = run("pkeyutl", "-decrypt", "-inkey", "ours.pem", "-in", "wrapped").stdout
    assert len(key) == sm4.KEY_SIZE
    assert sm4.decrypt(key, env.ciphertext, b"order:1") == b"dataset bytes"


# --------------------------------------------------------------------------- PEM keys


def test_openssl_keys_load_with_us(run: Run, theirs: SM2PrivateKey, tmp_path: Path) -> None:
    public = SM2PublicKey.from_pem((tmp_path / "theirs.pub").read_bytes())
    assert theirs.public_key() == public
    assert public.to_pem() == (tmp_path / "theirs.pub").read_bytes()
    der = run("pkey", "-in", "theirs.pem", "-pubout", "-outform", "DER").stdout
    assert public.to_der() == der
    assert public.key_id() == sm3(der).hex()


def test_our_keys_load_in_openssl(run: Run, ours: SM2PrivateKey, tmp_path: Path) -> None:
    pub = run("pkey", "-in", "ours.pem", "-pubout").stdout
    assert pub == ours.public_key().to_pem()
    assert run("pkey", "-pubin", "-in", "ours.pub", "-noout").returncode == 0
    text = run("pkey", "-in", "ours.pem", "-noout", "-text").stdout
    assert b"SM2" in text


def test_our_encrypted_key_loads_in_openssl(run: Run, ours: SM2PrivateKey, tmp_path: Path) -> None:
    (tmp_path / "enc.pem").write_bytes(ours.to_pem(b"pass phrase"))
    pub = run("pkey", "-in", "enc.pem", "-passin", "pass:pass phrase", "-pubout").stdout
    assert pub == ours.public_key().to_pem()
    wrong = run("pkey", "-in", "enc.pem", "-passin", "pass:wrong", "-pubout", check=False)
    assert wrong.returncode != 0


@pytest.mark.parametrize("cipher", ["-aes-256-cbc", "-sm4-cbc"])
def test_openssl_encrypted_key_loads_with_us(
    run: Run, theirs: SM2PrivateKey, tmp_path: Path, cipher: str
) -> None:
    run("pkey", "-in", "theirs.pem", cipher, "-passout", "pass:s3cret", "-out", "enc.pem")
    pem = (tmp_path / "enc.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert SM2PrivateKey.from_pem(pem, b"s3cret") == theirs
    with pytest.raises(KeyPasswordError):
        SM2PrivateKey.from_pem(pem, b"wrong")
    with pytest.raises(KeyPasswordError):
        SM2PrivateKey.from_pem(pem)


def test_openssl_traditional_sm2_key_loads_with_us(
    run: Run, theirs: SM2PrivateKey, tmp_path: Path
) -> None:
    """``openssl ec`` writes SEC1 under the label ``SM2 PRIVATE KEY``, optionally encrypted."""
    run("ec", "-in", "theirs.pem", "-out", "sec1.pem")
    pem = (tmp_path / "sec1.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN SM2 PRIVATE KEY-----")
    assert SM2PrivateKey.from_pem(pem) == theirs
    run("ec", "-in", "theirs.pem", "-aes256", "-passout", "pass:pw", "-out", "sec1enc.pem")
    pem = (tmp_path / "sec1enc.pem").read_bytes()
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    assert SM2PrivateKey.from_pem(pem, b"pw") == theirs
    with pytest.raises(KeyPasswordError):
        SM2PrivateKey.from_pem(pem, b"wrong")


# --------------------------------------------------------------------------- SM3


def test_sm3_matches_openssl(run: Run, tmp_path: Path) -> None:
    data = os.urandom(100_003)
    (tmp_path / "blob").write_bytes(data)
    out = run("dgst", "-sm3", "-binary", "blob").stdout
    assert out == sm3(data)


# --------------------------------------------------------------------------- the golden vectors

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "vectors" / "bundle-v1.json").read_text(
        encoding="utf-8"
    )
)


def _openssl_verifies(
    run: Run, tmp_path: Path, pem: str, message: bytes, der_signature: bytes, distid: str
) -> bool:
    (tmp_path / "vector.pub").write_text(pem, encoding="ascii")
    (tmp_path / "vector.msg").write_bytes(message)
    (tmp_path / "vector.sig").write_bytes(der_signature)
    args = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", "vector.pub"]
    # OpenSSL 3.0 uses the empty id when none is given: the default id is always explicit.
    if distid:
        args += ["-pkeyopt", f"distid:{distid}"]
    result = run(*args, "-in", "vector.msg", "-sigfile", "vector.sig", check=False)
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


def test_openssl_agrees_on_the_vectors_digests(run: Run, tmp_path: Path) -> None:
    for case in VECTORS["sm3"]:
        (tmp_path / "vector.bin").write_bytes(bytes.fromhex(case["input_hex"]))
        assert run("dgst", "-sm3", "-binary", "vector.bin").stdout.hex() == case["digest"]
    for case in VECTORS["key_ids"]:
        (tmp_path / "vector.pub").write_text(case["public_key_pem"], encoding="ascii")
        der = run("pkey", "-pubin", "-in", "vector.pub", "-outform", "DER").stdout
        assert der.hex() == case["spki_der_hex"]
        (tmp_path / "vector.der").write_bytes(der)
        assert run("dgst", "-sm3", "-binary", "vector.der").stdout.hex() == case["key_id"]
    for leaf in VECTORS["merkle"]["leaves"]:
        (tmp_path / "vector.leaf").write_bytes(b"\x00" + leaf["data_utf8"].encode("utf-8"))
        assert run("dgst", "-sm3", "-binary", "vector.leaf").stdout.hex() == leaf["leaf_hash"]


def test_openssl_agrees_on_the_vectors_signatures(run: Run, tmp_path: Path) -> None:
    for case in VECTORS["sm2"]:
        verified = _openssl_verifies(
            run,
            tmp_path,
            case["public_key_pem"],
            bytes.fromhex(case["message_hex"]),
            bytes.fromhex(case["signature_der_hex"]),
            case["id"],
        )
        assert verified is case["valid"], case["desc"]
    for statement in VECTORS["statements"]:
        assert _openssl_verifies(
            run,
            tmp_path,
            statement["log_public_key"],
            statement["signed_bytes"].encode("utf-8"),
            bytes.fromhex(statement["signature_der_hex"]),
            "1234567812345678",
        ), statement["kind"]


def test_openssl_verifies_the_complete_bundles_record_signature(run: Run, tmp_path: Path) -> None:
    """The actor's signature covers the RFC 8785 bytes re-made from the parsed record."""
    for case in VECTORS["bundles"]:
        if case["expect"]["verdict"] != "verified":
            continue
        record = case["bundle"]["record"]
        assert _openssl_verifies(
            run,
            tmp_path,
            case["bundle"]["actor_public_key"],
            bytes(rfc8785.dumps(record["record"])),
            base64.b64decode(record["signature"]),
            "1234567812345678",
        ), case["desc"]


def test_openssl_refuses_every_record_signature_the_vectors_refuse(
    run: Run, tmp_path: Path
) -> None:
    """Each case failing at actor_signature (edited record, other key, other id, raw or
    non-minimal or trailing-byte signature) fails in OpenSSL too."""
    cases = [c for c in VECTORS["bundles"] if c["expect"]["failed_step"] == "actor_signature"]
    assert len(cases) >= 8
    for case in cases:
        record = case["bundle"]["record"]
        assert not _openssl_verifies(
            run,
            tmp_path,
            case["bundle"]["actor_public_key"],
            bytes(rfc8785.dumps(record["record"])),
            base64.b64decode(record["signature"]),
            "1234567812345678",
        ), case["desc"]
