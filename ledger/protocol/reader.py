"""Reading a JSON answer of the exchange strictly: the one reader the
:mod:`ledger.protocol` shapes (and the SDK's own models) parse with."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, Self, TypeVar

from ledger.records import MAX_SAFE_INTEGER, RecordFormatError

__all__ = ["HEX64", "JSONObject"]

HEX64: Final = re.compile(r"[0-9a-f]{64}")
"""A key id or an SM3 digest in hex: 64 lowercase hex digits."""

T = TypeVar("T")


class JSONObject:
    """A reader of one JSON object: required/optional fields with checked types.
    Fields not asked for are ignored (a server may add fields). Failures raise
    :class:`ledger.records.RecordFormatError` naming the field's path."""

    __slots__ = ("data", "where")

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RecordFormatError(
                f"expected a JSON object, got {type(data).__name__}", path=where
            )
        self.data: dict[str, Any] = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise RecordFormatError("missing field", path=self.path(key))
        return self.data[key]

    def _fail(self, key: str, expected: str) -> RecordFormatError:
        value = self.data.get(key)
        return RecordFormatError(
            f"expected {expected}, got {type(value).__name__}", path=self.path(key)
        )

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def integer(self, key: str, *, minimum: int = 0) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        if not minimum <= value <= MAX_SAFE_INTEGER:
            raise RecordFormatError(f"{value} is out of range", path=self.path(key))
        return value

    def opt_integer(self, key: str, *, minimum: int = 0) -> int | None:
        return self.integer(key, minimum=minimum) if self.has(key) else None

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean")
        return value

    def hex64(self, key: str) -> str:
        value = self.text(key)
        if not HEX64.fullmatch(value):
            raise RecordFormatError("expected 64 lowercase hex digits", path=self.path(key))
        return value

    def opt_hex64(self, key: str) -> str | None:
        return self.hex64(key) if self.has(key) else None

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw(key)
        if not isinstance(value, dict):
            raise self._fail(key, "a JSON object")
        return value

    def obj(self, key: str) -> Self:
        return type(self)(self.raw(key), self.path(key))

    def items(self, key: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self._fail(key, "a JSON list")
        return tuple(parse(item, f"{self.path(key)}[{i}]") for i, item in enumerate(value))

    def strings(self, key: str) -> tuple[str, ...]:
        def one(item: Any, where: str) -> str:
            if not isinstance(item, str):
                raise RecordFormatError("expected a string", path=where)
            return item

        return self.items(key, one)
