"""Examples of the OpenAPI document: request bodies and responses of every endpoint.

They live in ``examples.json`` next to this module, recorded by ``make examples``
(``tools/openapi_examples/``, outside the runtime package) from a story played
through the SDK against a real exchange: the signed records in it are real SM2
signatures by documentation keys, the promises, quotes, checkpoints, proofs and
receipt those the exchange answered, so a reader can check them with the SDK, and
``tests/exchange/test_openapi.py`` re-verifies them (signatures, payload models,
schemas) so they cannot rot. The runtime only loads the file.

The helpers below return the pieces route decorators merge into their
``responses=`` and ``openapi_extra=`` (FastAPI deep-merges both into the
generated operation, next to the schema it derives from the models).
:func:`install_examples` then puts every example back verbatim: FastAPI encodes
the document with ``exclude_none``, which drops the ``null`` members of examples
(``"next_cursor": null``, ``"published_at": null`` …), leaving them invalid
against their own schemas.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

from fastapi import FastAPI

__all__ = [
    "EXAMPLES_FILE",
    "data",
    "ids",
    "install_examples",
    "json_body",
    "ok",
    "request_example",
    "response_example",
]

EXAMPLES_FILE = "examples.json"


@functools.cache
def data() -> dict[str, Any]:
    """The whole examples file (read once per process)."""
    text = resources.files(__package__).joinpath(EXAMPLES_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def ids() -> dict[str, str]:
    """The story's identifiers (key ids, listing and order ids) by role name, so other
    examples (error messages) can name the same things."""
    named: dict[str, str] = data()["ids"]
    return named


def request_example(name: str) -> Any:
    """The request body stored as ``requests[name]`` (``KeyError`` if there is none:
    a route naming a missing example fails at import, not silently)."""
    return data()["requests"][name]


def response_example(name: str) -> Any:
    return data()["responses"][name]


def json_body(name: str) -> dict[str, Any]:
    """``openapi_extra`` giving the JSON request body its example."""
    return {"requestBody": {"content": {"application/json": {"example": request_example(name)}}}}


def ok(status: int, name: str) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` entry giving the ``status`` (2xx) JSON response its example."""
    return {status: {"content": {"application/json": {"example": response_example(name)}}}}


def _without_nulls(value: Any) -> Any:
    """``value`` as FastAPI's encoder leaves it (``exclude_none``: no null members)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@functools.cache
def _originals() -> dict[str, Any]:
    """Every stored example, keyed by the fingerprint of its null-less form."""
    found: dict[str, Any] = {}
    for section in ("requests", "responses"):
        for value in data()[section].values():
            key = _fingerprint(_without_nulls(value))
            if key in found and found[key] != value:
                raise ValueError("two examples differ only in their null members")
            found[key] = value
    return found


def _restore(node: Any) -> None:
    """Put the stored original back wherever ``node`` holds an example that lost its
    nulls (``example``, or ``examples.<name>.value``)."""
    originals = _originals()

    def original(value: Any) -> Any:
        return copy.deepcopy(originals.get(_fingerprint(value), value))

    if isinstance(node, dict):
        if "example" in node:
            node["example"] = original(node["example"])
        named = node.get("examples")
        if isinstance(named, dict):
            for example in named.values():
                if isinstance(example, dict) and "value" in example:
                    example["value"] = original(example["value"])
        for value in node.values():
            _restore(value)
    elif isinstance(node, list):
        for item in node:
            _restore(item)


def install_examples(app: FastAPI) -> None:
    """Make ``app.openapi()`` carry the examples with their ``null`` members (see the
    module docstring). Call it after every other ``app.openapi`` wrapper."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        _restore(schema.get("paths", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
