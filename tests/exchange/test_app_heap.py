"""The app tunes the garbage collector while it serves, and undoes it when it stops."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import httpx

from exchange.app import GC_YOUNG_THRESHOLD, create_app
from exchange.settings import Settings


def test_serving_freezes_the_startup_heap_and_stopping_undoes_it(
    tmp_path: Path, live_server: Any
) -> None:
    before = gc.get_threshold()
    app = create_app(Settings(data_dir=tmp_path, sequencer_enabled=False))
    with live_server(app) as url:
        assert httpx.get(f"{url}/.well-known/shancheng/log-key").status_code == 200
        assert gc.get_freeze_count() > 0  # the app itself is among the frozen objects
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_a_stopped_app_can_be_collected(tmp_path: Path, live_server: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path, sequencer_enabled=False))
    with live_server(app):
        pass
    gone = weakref.ref(app)
    del app
    gc.collect()
    assert gone() is None  # not kept alive by the permanent generation
