"""A computation on provider-held data, defined once for the exchange, the provider
agent and the buyer.

On a computation order (a listing whose version offers computation,
:class:`ledger.computation.offer.ComputationOffer`), the buyer signs a
``computation.requested`` record (:class:`ComputationRequest`: a new
computation id, the order, the SQL). The exchange refuses early what the
validator refuses and reserves one query (and its ε) of the order's allowance;
the provider's agent, which learns of the request from the event feed, runs it
and answers with a provider-signed record:

* ``computation.completed`` (:class:`ComputationCompleted`): the SM3 of the
  exact SQL bytes it ran, the SM3 of the result's canonical bytes
  (:meth:`ledger.computation.result.ResultTable.to_bytes`), the SM3 and size of
  the result encrypted to the buyer (SM4, associated data :func:`result_aad`;
  uploaded beforehand, the exchange stores it byte for byte), the SM4 key
  SM2-wrapped to the buyer's registered key, the ε it spent (a decimal string
  with at most 6 decimals, ``"0"`` without privacy) and the rows it scanned;
* ``computation.refused`` (:class:`ComputationRefused`): a reason code (those
  of :data:`ledger.computation.validate.REASONS` or the agent's own:
  ``timeout``, ``out_of_memory``, …). Nothing is charged for it.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError, canonical_json

__all__ = [
    "COMPUTATION_COMPLETED",
    "COMPUTATION_REFUSED",
    "COMPUTATION_REQUESTED",
    "MAX_SQL_CHARS",
    "RESULT_KIND",
    "ComputationCompleted",
    "ComputationRefused",
    "ComputationRequest",
    "result_aad",
]

COMPUTATION_REQUESTED: Final = "computation.requested"
COMPUTATION_COMPLETED: Final = "computation.completed"
COMPUTATION_REFUSED: Final = "computation.refused"
RESULT_KIND: Final = "shancheng.computation-result.v1"

MAX_SQL_CHARS: Final = 16_000
"""Longest SQL a record carries (the validator refuses more than 4,000 characters as
``too_long``; this bound only keeps records small)."""
_MAX_WRAPPED_KEY: Final = 512
_REASON: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EPSILON: Final = re.compile(r"(0|[1-9][0-9]{0,5})(\.[0-9]{1,6})?")


def result_aad(computation_id: str, order_id: str) -> bytes:
    """The associated data sealed into every chunk of one computation's encrypted
    result: a result made for one computation never decrypts as another's."""
    return canonical_json(
        {"kind": RESULT_KIND, "computation_id": computation_id, "order_id": order_id}
    )


def _check_fields(o: JSONObject, fields: frozenset[str]) -> None:
    extra = sorted(set(o.data) - fields)
    if extra:
        raise RecordFormatError("unknown field", path=o.path(extra[0]))


def _uuid(o: JSONObject, key: str) -> str:
    value = o.text(key)
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        canonical = ""
    if canonical != value:
        raise RecordFormatError("expected a lowercase UUID", path=o.path(key))
    return value


@dataclass(frozen=True, slots=True)
class ComputationRequest:
    """The payload of a buyer-signed ``computation.requested`` record."""

    computation_id: str
    order_id: str
    sql: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "payload") -> ComputationRequest:
        """Parse strictly; :class:`ledger.records.RecordFormatError` naming the field."""
        o = JSONObject(data, where)
        _check_fields(o, _REQUEST_FIELDS)
        sql = o.text("sql")
        if not 0 < len(sql) <= MAX_SQL_CHARS or "\x00" in sql:
            raise RecordFormatError(f"1 to {MAX_SQL_CHARS} characters, no NUL", path=o.path("sql"))
        return cls(_uuid(o, "computation_id"), _uuid(o, "order_id"), sql)

    def to_dict(self) -> dict[str, Any]:
        return {"computation_id": self.computation_id, "order_id": self.order_id, "sql": self.sql}

    def sql_bytes(self) -> bytes:
        """The bytes ``query_sm3`` is the SM3 of: the SQL as UTF-8."""
        return self.sql.encode("utf-8")


@dataclass(frozen=True, slots=True)
class ComputationCompleted:
    """The payload of a provider-signed ``computation.completed`` record."""

    computation_id: str
    order_id: str
    query_sm3: str
    result_sm3: str
    ciphertext_sm3: str
    ciphertext_size: int
    wrapped_key: str
    epsilon_spent: str
    rows_scanned: int

    @classmethod
    def from_dict(cls, data: Any, where: str = "payload") -> ComputationCompleted:
        """Parse strictly; :class:`ledger.records.RecordFormatError` naming the field."""
        o = JSONObject(data, where)
        _check_fields(o, _COMPLETED_FIELDS)
        wrapped = o.text("wrapped_key")
        if not 0 < len(wrapped) <= _MAX_WRAPPED_KEY:
            raise RecordFormatError(
                f"base64, at most {_MAX_WRAPPED_KEY} characters", path=o.path("wrapped_key")
            )
        try:
            base64.b64decode(wrapped, validate=True)
        except (binascii.Error, ValueError):
            raise RecordFormatError("not base64", path=o.path("wrapped_key")) from None
        epsilon = o.text("epsilon_spent")
        if not _EPSILON.fullmatch(epsilon):
            raise RecordFormatError(
                "a decimal string with at most 6 decimals", path=o.path("epsilon_spent")
            )
        return cls(
            computation_id=_uuid(o, "computation_id"),
            order_id=_uuid(o, "order_id"),
            query_sm3=o.hex64("query_sm3"),
            result_sm3=o.hex64("result_sm3"),
            ciphertext_sm3=o.hex64("ciphertext_sm3"),
            ciphertext_size=o.integer("ciphertext_size", minimum=1),
            wrapped_key=wrapped,
            epsilon_spent=epsilon,
            rows_scanned=o.integer("rows_scanned"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "computation_id": self.computation_id,
            "order_id": self.order_id,
            "query_sm3": self.query_sm3,
            "result_sm3": self.result_sm3,
            "ciphertext_sm3": self.ciphertext_sm3,
            "ciphertext_size": self.ciphertext_size,
            "wrapped_key": self.wrapped_key,
            "epsilon_spent": self.epsilon_spent,
            "rows_scanned": self.rows_scanned,
        }

    @property
    def epsilon(self) -> Decimal:
        return Decimal(self.epsilon_spent)

    def wrapped_key_bytes(self) -> bytes:
        """The SM2 ciphertext of the result key (for :func:`ledger.envelope.unwrap_key`)."""
        return base64.b64decode(self.wrapped_key, validate=True)


@dataclass(frozen=True, slots=True)
class ComputationRefused:
    """The payload of a provider-signed ``computation.refused`` record."""

    computation_id: str
    order_id: str
    reason: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "payload") -> ComputationRefused:
        """Parse strictly; :class:`ledger.records.RecordFormatError` naming the field."""
        o = JSONObject(data, where)
        _check_fields(o, _REFUSED_FIELDS)
        reason = o.text("reason")
        if not _REASON.fullmatch(reason):
            raise RecordFormatError(
                "a reason code: lowercase letters, digits and _ (≤ 64)", path=o.path("reason")
            )
        return cls(_uuid(o, "computation_id"), _uuid(o, "order_id"), reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "computation_id": self.computation_id,
            "order_id": self.order_id,
            "reason": self.reason,
        }


_REQUEST_FIELDS: Final = frozenset(ComputationRequest.__dataclass_fields__)
_COMPLETED_FIELDS: Final = frozenset(ComputationCompleted.__dataclass_fields__)
_REFUSED_FIELDS: Final = frozenset(ComputationRefused.__dataclass_fields__)
