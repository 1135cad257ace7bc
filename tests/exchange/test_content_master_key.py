"""Two workers creating the content master key at once end up with ONE key: what
one encrypts, the other decrypts.

* Two threads, both past "no key yet" and both holding a key of their own before
  either writes (deterministic: the second finishes only after the first did).
* Two real processes on one fresh data directory, started at the same moment,
  each storing a dataset: both open with the key left on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exchange.content import content_store_from_settings, decrypt_file
from exchange.content.master_key import load_or_create_master_key
from exchange.settings import Settings
from ledger import sm4
from ledger.sm3 import sm3

ROOT = Path(__file__).resolve().parents[2]


def test_two_threads_creating_the_key_at_once_get_the_same_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data" / "content-master.key"
    both_generated = threading.Barrier(2)
    first_done = threading.Event()
    generate = sm4.generate_key

    def generate_then_meet() -> bytes:
        key = generate()
        both_generated.wait(timeout=30)  # both saw no key and made their own
        if threading.current_thread().name == "second":
            assert first_done.wait(timeout=30)
        return key

    monkeypatch.setattr(sm4, "generate_key", generate_then_meet)
    keys: dict[str, bytes] = {}

    def create(name: str) -> None:
        keys[name] = load_or_create_master_key(path)
        if name == "first":
            first_done.set()

    threads = [threading.Thread(target=create, args=(n,), name=n) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(keys) == {"first", "second"}
    assert keys["first"] == keys["second"] == bytes.fromhex(path.read_text().strip())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


# A worker process: imports done, it waits for the start signal (a file), opens the
# content store of the data directory (creating the master key if there is none)
# and stores one dataset; prints the stored content's description.
_WORKER = """
import json, sys, time
from pathlib import Path

from exchange.content import content_store_from_settings
from exchange.settings import Settings
from ledger.sm3 import sm3

data_dir, listing_id, ready, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
settings = Settings(data_dir=Path(data_dir))
data = ("rows of " + listing_id + "\\n").encode() * 1000
ready.touch()
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.001)
store = content_store_from_settings(settings)
content = store.ingest(listing_id, 1, [data], sm3(data).hex())
print(json.dumps(content.to_dict()))
"""


def test_two_processes_starting_on_a_fresh_data_dir_share_one_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    go = tmp_path / "go"
    listings = ["lst_first", "lst_second"]
    ready = [tmp_path / f"ready-{n}" for n in listings]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(data_dir), listing, str(flag), str(go)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for listing, flag in zip(listings, ready, strict=True)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready):
            assert all(p.poll() is None for p in processes), "a worker died before the start"
            assert time.monotonic() < deadline, "the workers did not get ready"
            time.sleep(0.01)
        go.touch()
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
    wrapped_under = {json.loads(out)["master_key_id"] for out, _ in results}
    assert len(wrapped_under) == 1, "the workers wrapped content keys under different keys"

    store = content_store_from_settings(Settings(data_dir=data_dir))
    for listing in listings:
        data = f"rows of {listing}\n".encode() * 1000
        content = store.get(listing, 1)
        out = tmp_path / f"{listing}.plain"
        delivery = store.open_for_delivery(listing, 1)
        digest = decrypt_file(
            store.content_key(content),
            delivery.path,
            out,
            listing_id=listing,
            version=1,
            expected_sm3_hex=sm3(data).hex(),
        )
        assert digest == sm3(data).hex() and out.read_bytes() == data
