"""The OpenAPI examples file is what ``make examples`` records: the committed file is
in the generator's canonical form, and a fresh run of the story (a real exchange
on a real devnet) yields exactly the same example names with bodies of the same
shape, so an endpoint whose example no story step records fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools import openapi_examples

SECTIONS = ("ids", "keys", "requests", "responses")


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(openapi_examples.OUTPUT.read_text(encoding="utf-8"))
    return loaded


def merge(left: Any, right: Any) -> Any:
    """Two skeletons as one: an object's members united, a scalar giving way to a
    structure (a ``null`` in one example, an object in its sibling)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return {k: merge(left.get(k), right.get(k)) for k in sorted({*left, *right})}
    if isinstance(left, list) and isinstance(right, list):
        return [merge(*left, *right)]
    return left if right is None else right


def skeleton(value: Any) -> Any:
    """``value``'s JSON shape: objects keep their member names, arrays the merged
    shape of their items (their length may differ between runs), scalars vanish."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shape = None
        for item in value:
            shape = merge(shape, skeleton(item))
        return [shape]
    return None


def test_skeleton_keeps_names_and_merges_array_items() -> None:
    value = {"b": [{"x": 1, "y": None}, {"y": {"z": 2}}], "a": "text"}
    assert skeleton(value) == {"a": None, "b": [{"x": None, "y": {"z": None}}]}
    assert skeleton([]) == [None] and skeleton(None) is None


def test_the_committed_file_is_in_the_generators_form() -> None:
    text = openapi_examples.OUTPUT.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    assert sorted(data) == sorted(("comment", *SECTIONS))
    for section in ("requests", "responses"):
        assert list(data[section]) == sorted(data[section]), section


@pytest.mark.chain
@pytest.mark.slow
def test_the_story_records_the_committed_examples(tmp_path: Path) -> None:
    target = tmp_path / "examples.json"
    assert openapi_examples.main([str(target)]) == 0
    fresh = json.loads(target.read_text(encoding="utf-8"))
    stored = committed()
    for section in SECTIONS:
        assert sorted(fresh[section]) == sorted(stored[section]), section
    assert fresh["keys"] == stored["keys"]  # documentation keys: the same every run
    for section in ("requests", "responses"):
        for name, value in stored[section].items():
            assert skeleton(fresh[section][name]) == skeleton(value), f"{section}.{name}"
