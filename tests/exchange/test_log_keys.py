"""The exchange's SM2 log key: generated once with mode 0600, stable across
restarts, loadable from configuration, published at a well-known URL."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.app import create_app
from exchange.keys import (
    LOG_KEY_FILENAME,
    LogKeyError,
    load_log_key,
    load_or_create_key_file,
    read_key_file,
)
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey, SM2PublicKey


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, sequencer_enabled=False, **overrides)


def test_the_key_is_generated_private_and_stable_across_restarts(tmp_path: Path) -> None:
    first = create_app(_settings(tmp_path)).state.log_key
    path = tmp_path / LOG_KEY_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = create_app(_settings(tmp_path)).state.log_key
    assert first.key_id() == second.key_id()
    assert SM2PrivateKey.from_pem(path.read_bytes()).key_id() == first.key_id()
    assert [p.name for p in tmp_path.iterdir() if LOG_KEY_FILENAME in p.name] == [LOG_KEY_FILENAME]


def test_workers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / LOG_KEY_FILENAME
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def start() -> None:
        barrier.wait()
        ids.append(load_or_create_key_file(path).key_id())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [LOG_KEY_FILENAME]


def test_a_configured_encrypted_key_is_loaded(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    key_file = tmp_path / "log.pem"
    key_file.write_bytes(key.to_pem("s3cret"))
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    settings = _settings(
        tmp_path / "data", log_key_file=key_file, log_key_password_file=password_file
    )
    assert load_log_key(settings).key_id() == key.key_id()
    assert not (tmp_path / "data" / LOG_KEY_FILENAME).exists()

    password_file.write_text("wrong\n")
    with pytest.raises(LogKeyError, match=r"log\.pem"):
        load_log_key(settings)


def test_a_generated_key_can_be_password_protected(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("pw\n")
    settings = _settings(tmp_path, log_key_password_file=password_file)
    key = load_log_key(settings)
    pem = (tmp_path / LOG_KEY_FILENAME).read_bytes()
    assert b"ENCRYPTED" in pem
    assert load_log_key(settings).key_id() == key.key_id()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "cannot read the log key"),
        (lambda d: (d / "log.pem").write_text("not a key"), "not a usable SM2 private key"),
    ],
)
def test_a_bad_configured_key_is_a_clear_error(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(LogKeyError, match=message):
        load_log_key(_settings(tmp_path, log_key_file=tmp_path / "log.pem"))


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_log_key(_settings(tmp_path))
    (tmp_path / LOG_KEY_FILENAME).chmod(0o644)
    with pytest.raises(LogKeyError, match="chmod 600"):
        load_log_key(_settings(tmp_path))


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("")
    with pytest.raises(LogKeyError, match="empty"):
        load_log_key(_settings(tmp_path, log_key_password_file=tmp_path / "password"))


def test_the_public_key_is_published(tmp_path: Path, live_server: Any) -> None:
    app = create_app(_settings(tmp_path))
    expected = app.state.log_key.public_key()
    with live_server(app) as url:
        body = httpx.get(f"{url}/.well-known/shancheng/log-key").json()
    assert body["key_id"] == expected.key_id()
    published = SM2PublicKey.from_pem(body["public_key"])
    assert published == expected and published.key_id() == body["key_id"]


def test_errors_name_the_key_they_are_about(tmp_path: Path) -> None:
    """The same helper keeps the dev operator key: its errors must not say "log key"."""
    path = tmp_path / "operator-key.pem"
    key = load_or_create_key_file(path, what="the dev operator key")
    assert load_or_create_key_file(path, what="the dev operator key").key_id() == key.key_id()
    path.chmod(0o644)
    with pytest.raises(LogKeyError, match=r"^the dev operator key .* has mode 0644") as loose:
        load_or_create_key_file(path, what="the dev operator key")
    assert "log key" not in str(loose.value)
    with pytest.raises(LogKeyError, match=r"^the log key .* has mode 0644"):
        load_or_create_key_file(path)  # the default keeps today's wording
    with pytest.raises(LogKeyError, match=r"^cannot read the dev operator key "):
        read_key_file(tmp_path / "missing.pem", what="the dev operator key")
