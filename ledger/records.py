"""Records: the typed, actor-signed events the log holds.

A :class:`Record` is an event envelope::

    {"type": "order.placed", "schema_version": 1,
     "actor": "<hex SM3 of the actor's DER SubjectPublicKeyInfo>",
     "timestamp": <ms since the epoch>, "payload": {...}}

Its *canonical bytes* are the RFC 8785 (JSON Canonicalization Scheme)
encoding of that object; the actor signs them with SM2 (:func:`sign_record`),
giving a :class:`SignedRecord`::

    {"record": {...}, "signature": "<base64 DER SM2 signature>"}

The RFC 8785 encoding of the signed record is the Merkle *leaf data*
(:meth:`SignedRecord.leaf_bytes`), so the leaf hash commits to the record and
to the actor's signature. The exchange never signs on a user's behalf.

JSON values are restricted so that canonical bytes are unambiguous: payloads
are JSON objects with string keys; values are ``None``, ``bool``, ``str``,
integers within the IEEE-754 safe range (``|n| < 2**53``), lists and objects.
Floats are refused everywhere (money is integer fen; canonical float
encoding is a trap). A refused value raises :class:`RecordFormatError`
naming its path, e.g. ``payload.items[2].price``.

Value types are frozen. A record's payload is deep-frozen (read-only
mappings and tuples); :meth:`Record.to_dict` returns plain ``dict``/``list``
copies.

:class:`RecordFormatError` is also what :mod:`ledger.checkpoint` and
:mod:`ledger.bundle` raise for malformed JSON: catching it catches every
"this ledger object is malformed" failure.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Final, NoReturn

import rfc8785

from ledger.errors import LedgerError, VerificationError
from ledger.merkle import leaf_hash as merkle_leaf_hash
from ledger.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "MAX_SAFE_INTEGER",
    "MAX_TEXT_DEPTH",
    "ActorMismatchError",
    "FrozenMapping",
    "Record",
    "RecordFormatError",
    "SignedRecord",
    "canonical_json",
    "check_json_value",
    "check_text_depth",
    "parse_json_object",
    "parse_json_text",
    "sign_record",
    "thaw",
]

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer RFC 8785 encodes exactly (I-JSON, RFC 7493 §2.2)."""

MAX_DEPTH: Final = 64
"""Deepest nesting of objects/arrays accepted in a payload."""

TYPE_PATTERN: Final = re.compile(r"[a-z][a-z_]*(\.[a-z][a-z_]*)+")
"""Record type names: dotted lowercase words, e.g. ``listing.published``."""

KEY_ID_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
"""A key id: 64 lowercase hex digits (SM3 of a DER SubjectPublicKeyInfo)."""

_MAX_SIGNATURE_SIZE: Final = 256
_RECORD_FIELDS: Final = ("type", "schema_version", "actor", "timestamp", "payload")
_SIGNED_FIELDS: Final = ("record", "signature")


# --------------------------------------------------------------------------- errors


class RecordFormatError(LedgerError):
    """A record (or promise, checkpoint, bundle) is malformed: a missing or
    unknown field, a value of the wrong type, a float, bad base64/hex, …

    ``path`` names the offending value (``""`` for the whole object)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.reason = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ActorMismatchError(VerificationError):
    """The public key offered for a record is not the record's actor.

    ``expected`` is the record's ``actor`` key id, ``actual`` the key id of
    the public key that was offered."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"public key {actual} is not the record's actor {expected}")


# --------------------------------------------------------------------------- JSON values


class FrozenMapping(Mapping[str, Any]):
    """A read-only ``str``-keyed mapping (the frozen form of a JSON object).

    Compares equal to any mapping with the same items; hashable when its
    values are.
    """

    __slots__ = ("_data",)

    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenMapping is immutable")

    def __reduce__(self) -> tuple[type[FrozenMapping], tuple[dict[str, Any]]]:
        return (FrozenMapping, (self._data,))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_json_value(value: Any, path: str, *, depth: int = 0) -> Any:
    """Validate a JSON value (no floats, safe integers, str keys, UTF-8 strings,
    at most :data:`MAX_DEPTH` levels of nesting) and return its deep-frozen
    copy (:class:`FrozenMapping` / ``tuple``).

    Raises :class:`RecordFormatError` naming ``path`` of the first offending value.
    """
    if depth > MAX_DEPTH:
        raise RecordFormatError(f"nested deeper than {MAX_DEPTH} levels", path=path)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise RecordFormatError(
                f"integer {value} is outside the safe range ±(2**53 - 1)", path=path
            )
        return int(value)
    if isinstance(value, float):
        raise RecordFormatError(
            f"floats are not allowed (got {value!r}); use integers (e.g. fen)", path=path
        )
    if isinstance(value, str):
        _check_text(value, path)
        return str(value)
    if isinstance(value, Mapping):
        items: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordFormatError(
                    f"object keys must be strings, got {type(key).__name__} {key!r}", path=path
                )
            _check_text(key, path)
            items[str(key)] = check_json_value(item, _join(path, key), depth=depth + 1)
        return FrozenMapping(items)
    if isinstance(value, list | tuple):
        return tuple(
            check_json_value(item, f"{path}[{i}]", depth=depth + 1) for i, item in enumerate(value)
        )
    raise RecordFormatError(
        f"{type(value).__name__} is not a JSON value (null, bool, int, str, list, object)",
        path=path,
    )


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordFormatError("string is not valid Unicode (lone surrogate)", path=path) from None


def thaw(value: Any) -> Any:
    """A plain ``dict``/``list`` deep copy of a (frozen) JSON value."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON value (validated: no floats, …)."""
    return bytes(rfc8785.dumps(thaw(check_json_value(value, ""))))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RecordFormatError(f"duplicate key {key!r} in JSON object")
        out[key] = value
    return out


def _reject_constant(name: str) -> NoReturn:
    raise RecordFormatError(f"{name} is not valid JSON")


# A JSON string, or the rest of the text after an unterminated one. Possessive
# and always matching where a string starts, so a scan is linear in the text:
# no backtracking, and no rescan from each quote of a hostile unterminated string.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_BRACKET_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}
MAX_TEXT_DEPTH: Final = MAX_DEPTH + 16
"""Deepest nesting of JSON text accepted before parsing (room for the envelopes
around a payload)."""


def check_text_depth(text: str, what: str) -> None:
    """Refuse JSON text nested deeper than :data:`MAX_TEXT_DEPTH` *before* parsing:
    the C decoder recurses and can overflow the stack on hostile input. Runs
    without recursion, in time linear in ``len(text)``; raises
    :class:`RecordFormatError`."""
    if text.count("[") + text.count("{") <= MAX_TEXT_DEPTH:
        return  # (strings included) too few to nest that deep: the common case, at once
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) <= MAX_TEXT_DEPTH:
        return
    if max(accumulate(map(_BRACKET_STEP.__getitem__, brackets))) > MAX_TEXT_DEPTH:
        raise RecordFormatError(f"{what} is nested deeper than {MAX_TEXT_DEPTH} levels")


def parse_json_text(text: str, what: str) -> Any:
    """Parse JSON text holding any value; deep nesting, duplicate keys, NaN and
    Infinity are refused with :class:`RecordFormatError`. Text that is not JSON
    raises ``json.JSONDecodeError`` (a ``ValueError``)."""
    check_text_depth(text, what)
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        raise RecordFormatError(f"{what} is nested too deeply") from None


def parse_json_object(data: str | bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON text that must hold one object; duplicate keys, NaN,
    Infinity and deep nesting are refused. Raises :class:`RecordFormatError`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise RecordFormatError(f"{what} is not UTF-8 text") from None
    try:
        value = parse_json_text(text, what)
    except ValueError as exc:
        raise RecordFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordFormatError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- strict field readers


class Fields:
    """Strict reader of one JSON object's fields, for ``from_dict`` parsers.

    Every failure raises :class:`RecordFormatError` naming the field's path.
    """

    def __init__(self, data: Any, path: str, required: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise RecordFormatError(f"expected a JSON object, got {type(data).__name__}", path=path)
        keys = set(data)
        missing = [k for k in required if k not in keys]
        if missing:
            raise RecordFormatError(f"missing field(s) {', '.join(missing)}", path=path)
        unknown = sorted(str(k) for k in keys - set(required))
        if unknown:
            raise RecordFormatError(f"unknown field(s) {', '.join(unknown)}", path=path)
        self._data = data
        self._path = path

    def path(self, key: str) -> str:
        return _join(self._path, key)

    def raw(self, key: str) -> Any:
        return self._data[key]

    def integer(self, key: str, *, minimum: int = 0) -> int:
        return check_int(self._data[key], self.path(key), minimum=minimum)

    def string(self, key: str) -> str:
        value = self._data[key]
        if not isinstance(value, str):
            raise RecordFormatError(
                f"expected a string, got {type(value).__name__}", path=self.path(key)
            )
        return str(value)

    def key_id(self, key: str) -> str:
        return check_key_id(self._data[key], self.path(key))

    def hex_bytes(self, key: str, *, size: int | None = None) -> bytes:
        value = self.string(key)
        if not re.fullmatch(r"(?:[0-9a-f]{2})*", value):
            raise RecordFormatError("expected lowercase hex", path=self.path(key))
        raw = bytes.fromhex(value)
        if size is not None and len(raw) != size:
            raise RecordFormatError(
                f"expected {size} bytes of hex, got {len(raw)}", path=self.path(key)
            )
        return raw

    def base64_bytes(self, key: str) -> bytes:
        value = self.string(key)
        return decode_base64(value, self.path(key))


def decode_base64(value: str, path: str) -> bytes:
    """Strict standard base64 (padded, canonical): one encoding per byte string."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise RecordFormatError("expected standard base64", path=path) from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise RecordFormatError("non-canonical base64", path=path)
    if not raw:
        raise RecordFormatError("empty signature", path=path)
    return raw


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_signature_bytes(signature: Any, path: str) -> bytes:
    if not isinstance(signature, bytes):
        raise RecordFormatError(
            f"signature must be bytes, got {type(signature).__name__}", path=path
        )
    if not 0 < len(signature) <= _MAX_SIGNATURE_SIZE:
        raise RecordFormatError(f"signature of {len(signature)} bytes", path=path)
    return signature


def check_int(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordFormatError(f"expected an integer, got {type(value).__name__}", path=path)
    if not minimum <= value <= MAX_SAFE_INTEGER:
        raise RecordFormatError(f"integer {value} outside [{minimum}, 2**53 - 1]", path=path)
    return int(value)


def check_key_id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not KEY_ID_PATTERN.fullmatch(value):
        raise RecordFormatError("expected a key id (64 lowercase hex digits)", path=path)
    return value


def check_hash(value: Any, path: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise RecordFormatError("expected a 32-byte hash", path=path)
    return value


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Record:
    """An event envelope; see the module docstring. Validated on construction
    (raises :class:`RecordFormatError`); ``payload`` is deep-frozen."""

    type: str
    schema_version: int
    actor: str
    timestamp: int
    payload: Mapping[str, Any] = field(default_factory=FrozenMapping)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not TYPE_PATTERN.fullmatch(self.type):
            raise RecordFormatError(
                f"record type {self.type!r} must look like 'listing.published' "
                "(dotted lowercase words)",
                path="type",
            )
        check_int(self.schema_version, "schema_version", minimum=1)
        check_key_id(self.actor, "actor")
        check_int(self.timestamp, "timestamp")
        if not isinstance(self.payload, Mapping):
            raise RecordFormatError(
                f"payload must be a JSON object, got {type(self.payload).__name__}",
                path="payload",
            )
        object.__setattr__(self, "payload", check_json_value(self.payload, "payload"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "schema_version": self.schema_version,
            "actor": self.actor,
            "timestamp": self.timestamp,
            "payload": thaw(self.payload),
        }

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> Record:
        """Parse strictly (exact field set, no bool for int, …); raises
        :class:`RecordFormatError`."""
        f = Fields(data, path, _RECORD_FIELDS)
        payload = f.raw("payload")
        if not isinstance(payload, Mapping):
            raise RecordFormatError(
                f"payload must be a JSON object, got {type(payload).__name__}",
                path=f.path("payload"),
            )
        type_ = f.string("type")
        schema_version = f.integer("schema_version", minimum=1)
        actor = f.key_id("actor")
        timestamp = f.integer("timestamp")
        try:
            return cls(type_, schema_version, actor, timestamp, payload)
        except RecordFormatError as exc:
            raise RecordFormatError(exc.reason, path=_join(path, exc.path)) from None

    def canonical_bytes(self) -> bytes:
        """RFC 8785 encoding of :meth:`to_dict`: the bytes the actor signs."""
        return bytes(rfc8785.dumps(self.to_dict()))

    def to_json(self) -> str:
        return self.canonical_bytes().decode("utf-8")

    @classmethod
    def from_json(cls, data: str | bytes) -> Record:
        return cls.from_dict(parse_json_object(data, "record"))


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A record with its actor's DER SM2 signature over ``record.canonical_bytes()``."""

    record: Record
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.record, Record):
            raise RecordFormatError(
                f"record must be a Record, got {type(self.record).__name__}", path="record"
            )
        check_signature_bytes(self.signature, "signature")

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record.to_dict(), "signature": encode_base64(self.signature)}

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "") -> SignedRecord:
        """Parse strictly; raises :class:`RecordFormatError` on malformed input."""
        f = Fields(data, path, _SIGNED_FIELDS)
        record = Record.from_dict(f.raw("record"), path=f.path("record"))
        return cls(record=record, signature=f.base64_bytes("signature"))

    def to_json(self) -> str:
        return self.leaf_bytes().decode("utf-8")

    @classmethod
    def from_json(cls, data: str | bytes) -> SignedRecord:
        return cls.from_dict(parse_json_object(data, "signed record"))

    def leaf_bytes(self) -> bytes:
        """RFC 8785 encoding of :meth:`to_dict`: the Merkle leaf data."""
        return bytes(rfc8785.dumps(self.to_dict()))

    def leaf_hash(self) -> bytes:
        """``SM3(0x00 || leaf_bytes())``."""
        return merkle_leaf_hash(self.leaf_bytes())

    def verify(self, public_key: SM2PublicKey) -> None:
        """Check that ``public_key`` is the actor and that its signature holds.

        Raises :class:`ActorMismatchError` (the key's id is not ``record.actor``)
        or :class:`ledger.errors.InvalidSignature`.
        """
        actual = public_key.key_id()
        if actual != self.record.actor:
            raise ActorMismatchError(self.record.actor, actual)
        public_key.verify(self.signature, self.record.canonical_bytes())


def sign_record(
    key: SM2PrivateKey,
    type: str,
    payload: Mapping[str, Any],
    *,
    timestamp: int | None = None,
    schema_version: int = 1,
) -> SignedRecord:
    """Build a :class:`Record` for ``key``'s holder and sign it.

    ``timestamp`` defaults to now (ms since the epoch). Raises
    :class:`RecordFormatError` for an invalid type name or payload.
    """
    record = Record(
        type=type,
        schema_version=schema_version,
        actor=key.key_id(),
        timestamp=now_ms() if timestamp is None else timestamp,
        payload=payload,
    )
    return SignedRecord(record=record, signature=key.sign(record.canonical_bytes()))
