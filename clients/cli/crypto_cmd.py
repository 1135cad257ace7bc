"""``shancheng keys new|pub``, ``sm3``, ``sign``, ``verify``: the GM crypto at the shell.

Signatures are SM2 with SM3 and the default distinguishing ID
``1234567812345678``, DER-encoded then base64 on the command line; they
interoperate with ``openssl pkeyutl -rawin -digest sm3 -pkeyopt distid:1234567812345678``.

Each command prints its bare result for the shell (a key id, a PEM, a hex
digest, a base64 signature, ``valid``); with ``--json`` it prints one JSON
document instead (:class:`clients.cli.output.Output`), whose fields its
``--help`` names.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from clients.cli._common import CLIError, stderr, stdout
from clients.cli.output import Output
from ledger.errors import (
    InvalidSignature,
    KeyFormatError,
    KeyPasswordError,
    UnsupportedKeyError,
)
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import sm3_file

PROGRESS_THRESHOLD = 64 << 20
"""Files at least this large get a progress bar (when stderr is a terminal)."""

EXIT_INVALID = 1

PasswordFileOption = Annotated[
    Path | None, typer.Option("--password-file", help="File holding the key's password.")
]


def _json_flag(fields: str) -> Any:
    """The ``--json`` option of a crypto command; ``fields`` names the document's keys."""
    return typer.Option("--json", help=f"Print one JSON document ({fields}) instead.")


keys_app = typer.Typer(
    name="keys",
    help="SM2 key pairs: create one, show its public key.",
    no_args_is_help=True,
)


# --------------------------------------------------------------------------- helpers


def _os_error(path: Path, what: str, exc: OSError) -> NoReturn:
    if isinstance(exc, FileNotFoundError):
        raise CLIError(f"{what} not found: {path}") from None
    if isinstance(exc, IsADirectoryError):
        raise CLIError(f"{what} is a directory: {path}") from None
    if isinstance(exc, PermissionError):
        raise CLIError(f"cannot read {what} {path}: permission denied") from None
    raise CLIError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _os_error(path, what, exc)


def _password(path: Path | None) -> bytes | None:
    """The password in ``path`` (one trailing newline dropped), or ``None``."""
    if path is None:
        return None
    secret = _read(path, "password file")
    if secret.endswith(b"\r\n"):
        secret = secret[:-2]
    elif secret.endswith(b"\n"):
        secret = secret[:-1]
    if not secret:
        raise CLIError(f"password file is empty: {path}")
    return secret


def _load_private(path: Path, password_file: Path | None) -> SM2PrivateKey:
    pem = _read(path, "private key")
    password = _password(password_file)
    try:
        return SM2PrivateKey.from_pem(pem, password)
    except KeyPasswordError as exc:
        if password is None:
            raise CLIError(f"{path}: the key is encrypted; pass --password-file") from None
        raise CLIError(f"{path}: {exc}") from None
    except UnsupportedKeyError as exc:  # a key, but not SM2: says so itself
        raise CLIError(f"{path}: {exc}") from None
    except KeyFormatError as exc:
        raise CLIError(_not_a_key(path, "private", exc)) from None


def _load_public(path: Path) -> SM2PublicKey:
    pem = _read(path, "public key")
    try:
        return SM2PublicKey.from_pem(pem)
    except UnsupportedKeyError as exc:
        raise CLIError(f"{path}: {exc}") from None
    except KeyFormatError as exc:
        raise CLIError(_not_a_key(path, "public", exc)) from None


def _not_a_key(path: Path, kind: str, exc: KeyFormatError) -> str:
    """The one line for a key file that does not parse: what is wrong for the user
    first, then the parser's precise reason (which names PEM and DER details)."""
    return f"{path}: not a PEM {kind} key ({exc})"


def _emit(text: str) -> None:
    """Print machine-readable output: no markup, no highlighting, no wrapping."""
    stdout.print(text, markup=False, highlight=False, soft_wrap=True)


def _write_private(out: Path, pem: bytes, *, force: bool) -> None:
    """Write ``pem`` to ``out`` with mode 0600; refuse to overwrite unless ``force``."""
    if out.is_dir():
        raise CLIError(f"{out} is a directory")
    if out.exists() and not force:
        raise CLIError(f"{out} already exists (use --force to overwrite)")
    target = out if not force else out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CLIError(f"{out} already exists (use --force to overwrite)") from None
    except FileNotFoundError:
        raise CLIError(f"directory not found: {out.parent}") from None
    except OSError as exc:
        raise CLIError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(pem)
        if target != out:
            os.replace(target, out)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise CLIError(f"cannot write {out}: {exc.strerror or exc}") from None


@contextmanager
def _progress(size: int) -> Iterator[Progress | None]:
    if size < PROGRESS_THRESHOLD or not stderr.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("[bold]SM3[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        yield progress


# --------------------------------------------------------------------------- commands


@keys_app.command("new")
def keys_new(
    out: Annotated[Path, typer.Option("--out", help="Where to write the PKCS#8 PEM private key.")],
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Encrypt the key with the password in this file."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: Annotated[bool, _json_flag("key_id, file, public_key, encrypted")] = False,
) -> None:
    """Create an SM2 key pair; print its key id (SM3 of the public key)."""
    password = _password(password_file)
    key = SM2PrivateKey.generate()
    _write_private(out, key.to_pem(password), force=force)
    stderr.print(f"wrote SM2 private key to {out} (mode 0600)", markup=False, highlight=False)
    if as_json:
        Output(as_json).json(
            {
                "key_id": key.key_id(),
                "file": out,
                "public_key": key.public_key(),
                "encrypted": password is not None,
            }
        )
        return
    _emit(key.key_id())


@keys_app.command("pub")
def keys_pub(
    key: Annotated[Path, typer.Argument(help="PEM private key file.")],
    password_file: PasswordFileOption = None,
    as_json: Annotated[bool, _json_flag("key_id, public_key")] = False,
) -> None:
    """Print the public key (SubjectPublicKeyInfo PEM) of a private key."""
    public = _load_private(key, password_file).public_key()
    if as_json:
        Output(as_json).json({"key_id": public.key_id(), "public_key": public})
        return
    _emit(public.to_pem().decode("ascii").rstrip("\n"))


def sm3_cmd(
    file: Annotated[Path, typer.Argument(help="File to hash (streamed).")],
    as_json: Annotated[bool, _json_flag("file, size, sm3")] = False,
) -> None:
    """Print the SM3 digest (hex) of a file."""
    try:
        if file.is_dir():
            raise CLIError(f"file is a directory: {file}")
        size = file.stat().st_size
        with _progress(size) as progress:
            if progress is None:
                digest = sm3_file(file)
            else:
                task = progress.add_task(file.name, total=size)
                digest = sm3_file(file, progress=lambda n: progress.advance(task, n))
    except OSError as exc:
        _os_error(file, "file", exc)
    if as_json:
        Output(as_json).json({"file": file, "size": size, "sm3": digest.hex()})
        return
    _emit(digest.hex())


def sign_cmd(
    file: Annotated[Path, typer.Argument(help="File to sign.")],
    key: Annotated[Path, typer.Option("--key", help="PEM private key file.")],
    password_file: PasswordFileOption = None,
    as_json: Annotated[bool, _json_flag("file, key_id, signature (base64 DER)")] = False,
) -> None:
    """Sign a file (SM2/SM3, ID 1234567812345678); print the DER signature in base64."""
    private = _load_private(key, password_file)
    data = _read(file, "file")
    signature = base64.b64encode(private.sign(data)).decode("ascii")
    if as_json:
        Output(as_json).json({"file": file, "key_id": private.key_id(), "signature": signature})
        return
    _emit(signature)


def verify_cmd(
    file: Annotated[Path, typer.Argument(help="Signed file.")],
    pub: Annotated[Path, typer.Option("--pub", help="PEM public key file.")],
    sig: Annotated[Path, typer.Option("--sig", help="File holding the base64 DER signature.")],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (valid, file, key_id, and reason when invalid) "
            "instead; an invalid signature still exits 1.",
        ),
    ] = False,
) -> None:
    """Verify a signature made by 'shancheng sign': exit 0 if valid, 1 if not."""
    public = _load_public(pub)
    text = _read(sig, "signature file")
    data = _read(file, "file")
    verdict: dict[str, Any] = {"valid": False, "file": file, "key_id": public.key_id()}

    def invalid(reason: str) -> CLIError:
        """The verdict (in JSON mode) and the error ``main`` prints: exit 1."""
        if as_json:
            Output(as_json).json({**verdict, "reason": reason})
        return CLIError(reason, exit_code=EXIT_INVALID)

    try:
        signature = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"invalid signature: {sig} does not hold base64") from None
    try:
        public.verify(signature, data)
    except InvalidSignature:
        raise invalid("invalid signature") from None
    if as_json:
        Output(as_json).json({**verdict, "valid": True})
        return
    _emit("valid")


# --------------------------------------------------------------------------- wiring


def register(app: typer.Typer) -> None:
    """Add the crypto commands to ``app``."""
    app.add_typer(keys_app, name="keys")
    app.command("sm3")(sm3_cmd)
    app.command("sign")(sign_cmd)
    app.command("verify")(verify_cmd)
