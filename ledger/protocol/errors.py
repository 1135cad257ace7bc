"""The body of every refusal the exchange answers: ``{"code", "message"}``.

``code`` is a stable machine-readable reason (``invalid_signature``,
``quote_expired``, …), ``message`` a human explanation. Parsing ignores other
fields, so the exchange may add some beside them. (No class docstring: it would
become the OpenAPI description.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.protocol.reader import JSONObject

__all__ = ["ErrorBody"]


@dataclass(frozen=True, slots=True)
class ErrorBody:
    code: str = field(metadata={"examples": ["invalid_signature"]})
    message: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ErrorBody:
        o = JSONObject(data, where)
        return cls(o.text("code"), o.text("message"))

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
