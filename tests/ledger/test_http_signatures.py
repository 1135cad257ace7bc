"""The ``sm2-sm3`` HTTP signature algorithm and the SM3 Content-Digest: known
answers, a full RFC 9421 sign/verify through ``http-message-signatures``, the
digest field's parsing, and that nothing outside ``ledger`` defines them again."""

from __future__ import annotations

import ast
import base64
import datetime
import hashlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)

from ledger import errors
from ledger.http_signatures import (
    ALGORITHM_ID,
    COVERED_COMPONENTS,
    SIGNATURE_LABEL,
    SM2_SM3,
    BodyDigest,
    DigestFormatError,
    SM3ContentDigest,
    content_digest,
    content_digest_of_file,
    content_digest_of_sm3,
    der_to_raw,
    digest_matches,
    parse_content_digest,
    raw_to_der,
)
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

ROOT = Path(__file__).resolve().parents[2]
SM3_ABC = bytes.fromhex("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
SM3_ABC_FIELD = f"sm3=:{base64.b64encode(SM3_ABC).decode()}:"


def test_content_digest_is_the_sm3_byte_sequence() -> None:
    assert content_digest(b"abc") == SM3_ABC_FIELD
    assert content_digest_of_sm3(SM3_ABC) == SM3_ABC_FIELD
    assert SM3ContentDigest.create(b"abc") == SM3_ABC_FIELD
    with pytest.raises(ValueError, match="32 bytes"):
        content_digest_of_sm3(SM3_ABC[:31])


def test_content_digest_of_a_file_streams_the_same_value(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    assert content_digest_of_file(path) == SM3_ABC_FIELD


def test_signature_value_is_r_and_s_not_der() -> None:
    key = SM2PrivateKey.generate()
    raw = SM2_SM3(private_key=key).sign(b"base")
    assert len(raw) == 64
    assert der_to_raw(raw_to_der(raw)) == raw
    key.public_key().verify(raw_to_der(raw), b"base")
    SM2_SM3(public_key=key.public_key()).verify(raw, b"base")
    SM2_SM3(public_key=key.public_key().to_pem()).verify(raw, b"base")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(lambda sig, base: (sig, base + b"!"), errors.InvalidSignature, id="base"),
        pytest.param(
            lambda sig, base: (bytes([sig[0] ^ 1]) + sig[1:], base),
            errors.InvalidSignature,
            id="flipped-bit",
        ),
        pytest.param(lambda sig, base: (sig[:63], base), ValueError, id="short"),
        pytest.param(lambda sig, base: (sig + b"\0", base), ValueError, id="long"),
    ],
)
def test_a_changed_signature_or_base_is_refused(
    change: Callable[[bytes, bytes], tuple[bytes, bytes]], expected: type[Exception]
) -> None:
    key = SM2PrivateKey.generate()
    signature, base = change(SM2_SM3(private_key=key).sign(b"base"), b"base")
    with pytest.raises(expected):
        SM2_SM3(public_key=key.public_key()).verify(signature, base)


def test_keys_of_another_kind_are_refused() -> None:
    key = SM2PrivateKey.generate()
    with pytest.raises(Exception, match="private key"):
        SM2_SM3(private_key=key.public_key())
    with pytest.raises(Exception, match="public key"):
        SM2_SM3(public_key=key)
    with pytest.raises(Exception, match="no private key"):
        SM2_SM3(public_key=key.public_key()).sign(b"base")


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, key: SM2PrivateKey) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> SM2PrivateKey:
        return self.key

    def resolve_public_key(self, key_id: str) -> SM2PublicKey | None:
        return self.key.public_key() if key_id == self.key.key_id() else None


def _signed_request(key: SM2PrivateKey, body: bytes) -> SimpleNamespace:
    request = SimpleNamespace(
        method="POST",
        url="http://127.0.0.1/listings?x=1",
        headers={"Content-Digest": content_digest(body)},
    )
    signer = HTTPMessageSigner(signature_algorithm=SM2_SM3, key_resolver=_Keys(key))
    signer.content_digest_class = SM3ContentDigest
    signer.sign(
        request,
        key_id=key.key_id(),
        created=datetime.datetime.now(tz=datetime.UTC),
        nonce="n" * 22,
        label=SIGNATURE_LABEL,
        include_alg=True,
        covered_component_ids=COVERED_COMPONENTS,
        use_existing_digest=True,
    )
    return request


def test_an_rfc_9421_signature_round_trips_and_names_the_algorithm() -> None:
    key = SM2PrivateKey.generate()
    request = _signed_request(key, b"{}")
    assert f'alg="{ALGORITHM_ID}"' in request.headers["Signature-Input"]
    assert request.headers["Signature-Input"].startswith(
        f'{SIGNATURE_LABEL}=("@method" "@target-uri" "content-digest")'
    )
    verifier = HTTPMessageVerifier(signature_algorithm=SM2_SM3, key_resolver=_Keys(key))
    (result,) = verifier.verify(request, require_components=COVERED_COMPONENTS)
    assert result.label == SIGNATURE_LABEL

    request.method = "PUT"
    with pytest.raises(InvalidSignature):
        verifier.verify(request, require_components=COVERED_COMPONENTS)


def test_parse_content_digest_keeps_supported_members() -> None:
    sha = hashlib.sha256(b"abc").digest()
    field = f"{SM3_ABC_FIELD}, sha-256=:{base64.b64encode(sha).decode()}:, md5=:AAAA:"
    digests = parse_content_digest(field)
    assert digests == {"sm3": SM3_ABC, "sha-256": sha}
    assert digest_matches(digests, b"abc")
    assert not digest_matches(digests, b"abd")
    assert not digest_matches({"sm3": SM3_ABC, "sha-256": bytes(32)}, b"abc")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        pytest.param("sm3=abc", "32-byte byte sequence", id="a-token"),
        pytest.param("sm3=:AAAA:", "32-byte", id="short-digest"),
        pytest.param("md5=:AAAA:", "needs one of: sm3, sha-256", id="nothing-supported"),
        pytest.param("sm3=:Zm9v", "malformed", id="unterminated"),
        pytest.param("sm3=:é:", "malformed", id="non-ascii"),
    ],
)
def test_parse_content_digest_refuses_bad_fields(field: str, message: str) -> None:
    with pytest.raises(DigestFormatError, match=message):
        parse_content_digest(field)


def test_body_digest_checks_chunks_as_they_arrive() -> None:
    check = BodyDigest({"sm3": SM3_ABC})
    for chunk in (b"a", b"", b"bc"):
        check.update(chunk)
    assert check.matches()
    check = BodyDigest({"sm3": SM3_ABC})
    check.update(b"ab")
    assert not check.matches()


def _definitions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            names |= {
                f"subclass of {b}" for b in bases & {"HTTPSignatureAlgorithm", "ContentDigest"}
            }
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            ("content_digest", "parse_content_digest", "der_to_raw", "raw_to_der")
        ):
            names.add(node.name)
    return names


def test_the_algorithm_and_the_digest_are_defined_only_in_ledger() -> None:
    found = {
        str(path.relative_to(ROOT)): names
        for package in ("clients", "exchange", "ledger")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (names := _definitions(path))
    }
    assert found == {
        "ledger/http_signatures.py": {
            "subclass of HTTPSignatureAlgorithm",
            "subclass of ContentDigest",
            "content_digest",
            "content_digest_of_file",
            "content_digest_of_sm3",
            "der_to_raw",
            "parse_content_digest",
            "raw_to_der",
        }
    }
