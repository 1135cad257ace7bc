"""``shancheng keys|sm3|sign|verify``: CliRunner for behaviour, real subprocesses for output."""

from __future__ import annotations

import base64
import io
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from typer.testing import CliRunner

import clients.cli
from clients.cli import crypto_cmd
from clients.cli._common import CLIError
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

ABC_SM3 = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    message: str | None  # the CLIError message main() would print, if any


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    clients.cli._register_groups()
    return CliRunner()


def invoke(cli: CliRunner, *args: str | Path) -> Outcome:
    """Run the app as ``main()`` would, mapping a CLIError to its exit code."""
    result = cli.invoke(clients.cli.app, [str(a) for a in args])
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        if not isinstance(exc, CLIError):
            raise exc  # anything else would be a traceback for the user
        return Outcome(exc.exit_code, result.stdout, result.stderr, exc.message)
    return Outcome(result.exit_code, result.stdout, result.stderr, None)


@pytest.fixture
def keyfile(cli: CliRunner, tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    assert invoke(cli, "keys", "new", "--out", path).exit_code == 0
    return path


@pytest.fixture
def pubfile(cli: CliRunner, keyfile: Path, tmp_path: Path) -> Path:
    path = tmp_path / "key.pub"
    path.write_text(invoke(cli, "keys", "pub", keyfile).stdout)
    return path


# --------------------------------------------------------------------------- keys


def test_keys_new_writes_0600_and_prints_key_id(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "alice.pem"
    result = invoke(cli, "keys", "new", "--out", out)
    assert result.exit_code == 0, result
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = SM2PrivateKey.from_pem(out.read_bytes())
    assert result.stdout.strip() == key.key_id()
    assert out.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_keys_new_refuses_to_overwrite(cli: CliRunner, keyfile: Path) -> None:
    before = keyfile.read_bytes()
    result = invoke(cli, "keys", "new", "--out", keyfile)
    assert result.exit_code == 2
    assert result.message is not None and "already exists" in result.message
    assert "--force" in result.message
    assert keyfile.read_bytes() == before


def test_keys_new_force_replaces_with_0600(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "old.pem"
    out.write_text("not a key")
    out.chmod(0o644)
    result = invoke(cli, "keys", "new", "--out", out, "--force")
    assert result.exit_code == 0, result
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert SM2PrivateKey.from_pem(out.read_bytes()).key_id() == result.stdout.strip()
    assert [p.name for p in tmp_path.iterdir()] == ["old.pem"]  # no temp file left


def test_keys_new_in_missing_directory(cli: CliRunner, tmp_path: Path) -> None:
    result = invoke(cli, "keys", "new", "--out", tmp_path / "nope" / "k.pem")
    assert result.exit_code == 2
    assert result.message is not None and "directory not found" in result.message


def test_password_protected_key(cli: CliRunner, tmp_path: Path) -> None:
    out, pw, wrong = tmp_path / "k.pem", tmp_path / "pw", tmp_path / "wrong"
    pw.write_text("hunter2\n")
    wrong.write_text("hunter3\n")
    assert invoke(cli, "keys", "new", "--out", out, "--password-file", pw).exit_code == 0
    assert out.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = SM2PrivateKey.from_pem(out.read_bytes(), b"hunter2")  # trailing newline dropped

    missing = invoke(cli, "keys", "pub", out)
    assert missing.exit_code == 2
    assert missing.message is not None and "--password-file" in missing.message
    bad = invoke(cli, "keys", "pub", out, "--password-file", wrong)
    assert bad.exit_code == 2
    assert bad.message is not None and "wrong password" in bad.message
    good = invoke(cli, "keys", "pub", out, "--password-file", pw)
    assert good.exit_code == 0
    assert good.stdout.encode() == key.public_key().to_pem()

    msg = tmp_path / "m"
    msg.write_bytes(b"m")
    signed = invoke(cli, "sign", msg, "--key", out, "--password-file", pw)
    key.public_key().verify(base64.b64decode(signed.stdout), b"m")


def test_empty_password_file(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    result = invoke(cli, "keys", "new", "--out", tmp_path / "k", "--password-file", tmp_path / "pw")
    assert result.exit_code == 2
    assert result.message is not None and "empty" in result.message
    assert not (tmp_path / "k").exists()


def test_keys_pub_prints_spki_pem(cli: CliRunner, keyfile: Path) -> None:
    result = invoke(cli, "keys", "pub", keyfile)
    assert result.exit_code == 0
    public = SM2PublicKey.from_pem(result.stdout)
    assert public == SM2PrivateKey.from_pem(keyfile.read_bytes()).public_key()
    assert result.stdout.encode() == public.to_pem()


# --------------------------------------------------------------------------- sm3


def test_sm3_file(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    result = invoke(cli, "sm3", tmp_path / "abc")
    assert result.exit_code == 0
    assert result.stdout == ABC_SM3 + "\n"
    assert result.stderr == ""  # no progress bar for small files / non-terminals


def test_sm3_progress_bar_on_a_terminal(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(crypto_cmd, "stderr", Console(file=screen, force_terminal=True))
    monkeypatch.setattr(crypto_cmd, "PROGRESS_THRESHOLD", 1)
    (tmp_path / "abc").write_bytes(b"abc")
    result = invoke(cli, "sm3", tmp_path / "abc")
    assert result.stdout == ABC_SM3 + "\n"
    assert "SM3" in screen.getvalue()


@pytest.mark.parametrize("target", ["missing", "."])
def test_sm3_bad_path(cli: CliRunner, tmp_path: Path, target: str) -> None:
    result = invoke(cli, "sm3", tmp_path / target)
    assert result.exit_code == 2
    assert result.message is not None
    assert "not found" in result.message or "directory" in result.message


# --------------------------------------------------------------------------- sign / verify


@pytest.fixture
def signed(cli: CliRunner, keyfile: Path, tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data.csv"
    data.write_bytes(b"id,value\n1,42\n")
    result = invoke(cli, "sign", data, "--key", keyfile)
    assert result.exit_code == 0, result
    sig = tmp_path / "data.sig"
    sig.write_text(result.stdout)
    return data, sig


def test_sign_then_verify(cli: CliRunner, pubfile: Path, signed: tuple[Path, Path]) -> None:
    data, sig = signed
    der = base64.b64decode(sig.read_text().strip(), validate=True)
    assert der[0] == 0x30
    result = invoke(cli, "verify", data, "--pub", pubfile, "--sig", sig)
    assert result.exit_code == 0
    assert result.stdout == "valid\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda data, sig: (_write(data, "id,value\n1,43\n"), sig), id="file changed"),
        pytest.param(
            lambda data, sig: (
                data,
                _write(
                    sig,
                    base64.b64encode(base64.b64decode(sig.read_text())[:-4]).decode(),
                ),
            ),
            id="truncated signature",
        ),
        pytest.param(lambda data, sig: (data, _write(sig, "!!not base64!!")), id="not base64"),
        pytest.param(lambda data, sig: (data, _write(sig, "")), id="empty signature"),
        pytest.param(
            lambda data, sig: (
                data,
                _write(sig, base64.b64encode(b"\x30\x06" + b"\x00" * 6).decode()),
            ),
            id="garbage DER",
        ),
    ],
)
def test_verify_invalid_exits_1(
    cli: CliRunner, pubfile: Path, signed: tuple[Path, Path], spoil: object
) -> None:
    assert callable(spoil)
    data, sig = spoil(*signed)
    result = invoke(cli, "verify", data, "--pub", pubfile, "--sig", sig)
    assert result.exit_code == 1
    assert result.message is not None and result.message.startswith("invalid signature")
    assert result.stdout == ""


def _p256_pem(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "p256.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_user_errors_are_one_clear_message(
    cli: CliRunner, keyfile: Path, pubfile: Path, signed: tuple[Path, Path], tmp_path: Path
) -> None:
    data, sig = signed
    junk = _write(
        tmp_path / "junk.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    p256 = _p256_pem(tmp_path)
    junk_pub = _write(tmp_path / "j.pub", "junk")
    cases: list[tuple[tuple[str | Path, ...], str]] = [
        (("sign", tmp_path / "absent", "--key", keyfile), "file not found"),
        (("sign", data, "--key", tmp_path / "absent.pem"), "private key not found"),
        # what is wrong for the user, then the parser's detail: one line naming the file
        (("sign", data, "--key", junk), f"{junk}: not a PEM private key (the PEM body"),
        (("sign", data, "--key", p256), "not an SM2 key"),
        (("sign", data, "--key", pubfile), "got a public key"),
        (("keys", "pub", p256), "not an SM2 key"),
        (("verify", data, "--pub", keyfile, "--sig", sig), "got a private key"),
        (("verify", data, "--pub", junk_pub, "--sig", sig), f"{junk_pub}: not a PEM public key ("),
        (("verify", data, "--pub", pubfile, "--sig", tmp_path / "nosig"), "signature file not"),
        (("verify", tmp_path / "absent", "--pub", pubfile, "--sig", sig), "file not found"),
        (("keys", "new", "--out", tmp_path), "is a directory"),
    ]
    for args, expected in cases:
        result = invoke(cli, *args)
        assert result.exit_code == 2, (args, result)
        assert result.message is not None and expected in result.message, (args, result)
        assert "\n" not in result.message


def test_register_is_idempotent(cli: CliRunner) -> None:
    clients.cli._register_groups()
    clients.cli._register_groups()
    groups = [g.name for g in clients.cli.app.registered_groups if g.name == "keys"]
    commands = [c.name for c in clients.cli.app.registered_commands if c.name == "sign"]
    assert groups == ["keys"]
    assert commands == ["sign"]


# --------------------------------------------------------------------------- real process


def _entry_point() -> Path:
    path = Path(sys.executable).parent / "shancheng"
    if not path.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    return path


def _command(*args: str) -> list[str]:
    return [str(_entry_point()), *args]


_ENV = {**os.environ, "NO_COLOR": "1"}


def _sh(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), cwd=cwd, capture_output=True, text=True, check=False, timeout=60, env=_ENV
    )


@pytest.mark.slow
def test_subprocess_round_trip_and_errors(tmp_path: Path) -> None:
    """The installed ``shancheng``: real exit codes, one ``error:`` line, no traceback."""
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "bad").write_text("nope\n")
    (tmp_path / "msg").write_bytes(b"hello exchange")
    (tmp_path / "junk.pem").write_text("garbage")
    _p256_pem(tmp_path)

    made = _sh(tmp_path, "keys", "new", "--out", "k.pem", "--password-file", "pw")
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    pub = _sh(tmp_path, "keys", "pub", "k.pem", "--password-file", "pw")
    assert pub.returncode == 0
    (tmp_path / "k.pub").write_text(pub.stdout)
    sig = _sh(tmp_path, "sign", "msg", "--key", "k.pem", "--password-file", "pw")
    assert sig.returncode == 0
    (tmp_path / "sig").write_text(sig.stdout)
    ok = _sh(tmp_path, "verify", "msg", "--pub", "k.pub", "--sig", "sig")
    assert (ok.returncode, ok.stdout) == (0, "valid\n")

    short = base64.b64encode(base64.b64decode(sig.stdout)[:20]).decode()
    (tmp_path / "short.sig").write_text(short)
    failures = [
        (("keys", "pub", "k.pem"), 2, "pass --password-file"),
        (("keys", "pub", "k.pem", "--password-file", "bad"), 2, "wrong password"),
        (("keys", "pub", "junk.pem"), 2, "junk.pem: not a PEM private key (not one PEM block"),
        (("keys", "pub", "p256.pem"), 2, "not an SM2 key"),
        (("sm3", "absent"), 2, "file not found"),
        (("verify", "pw", "--pub", "k.pub", "--sig", "sig"), 1, "invalid signature"),
        (("verify", "msg", "--pub", "k.pub", "--sig", "short.sig"), 1, "invalid signature"),
        (
            ("verify", "msg", "--pub", "junk.pem", "--sig", "sig"),
            2,
            "junk.pem: not a PEM public key (",
        ),
    ]
    # Started together: each process pays the CLI's import time once, in parallel.
    running = [
        (args, code, expected, subprocess.Popen(
            _command(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=_ENV,
        ))
        for args, code, expected in failures
    ]  # fmt: skip
    for args, code, expected, process in running:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == code, (args, stderr)
        assert "Traceback" not in stderr, (args, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, (args, stderr)
        assert lines[0].startswith("error: ") and expected in lines[0], (args, lines)
        assert stdout == ""


@pytest.mark.slow
def test_subprocess_signature_verifies_in_openssl(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    (tmp_path / "msg").write_bytes(b"interop via the command line")
    assert _sh(tmp_path, "keys", "new", "--out", "k.pem").returncode == 0
    (tmp_path / "k.pub").write_text(_sh(tmp_path, "keys", "pub", "k.pem").stdout)
    sig = _sh(tmp_path, "sign", "msg", "--key", "k.pem").stdout
    (tmp_path / "sig.der").write_bytes(base64.b64decode(sig))
    check = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
         "-pkeyopt", "distid:1234567812345678", "-pubin", "-inkey", "k.pub",
         "-in", "msg", "-sigfile", "sig.der"],
        cwd=tmp_path, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    if (
        check.returncode != 0
        and b"SM2"
        not in subprocess.run(
            [openssl, "list", "-public-key-algorithms"], capture_output=True, check=False
        ).stdout
    ):
        pytest.skip("this openssl has no SM2 support")
    assert check.returncode == 0, check.stderr
