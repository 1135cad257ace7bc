"""An account's balance as ``GET /accounts/{key_id}`` and the money-moving calls
answer it. Money is integer fen.

Field descriptions and examples sit in the fields' ``metadata`` (plain
``dataclasses`` metadata, which pydantic reads), so the exchange serves this
class and its OpenAPI document still describes the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ledger.protocol.reader import JSONObject

__all__ = ["PLATFORM_ACCOUNT", "Balance"]

PLATFORM_ACCOUNT: Final = "platform"
"""The key id of the exchange's fee account (operators read it like any other)."""


@dataclass(frozen=True, slots=True)
class Balance:
    """Spendable (``available``) and escrowed (``held``) fen of ``key_id`` (a
    participant's key id, or :data:`PLATFORM_ACCOUNT`)."""

    key_id: str
    available: int = field(metadata={"description": "Spendable fen.", "examples": [80_100]})
    held: int = field(
        metadata={"description": "Fen in escrow for placed orders.", "examples": [19_900]}
    )

    @classmethod
    def from_dict(cls, data: Any, where: str = "account") -> Balance:
        o = JSONObject(data, where)
        key_id = PLATFORM_ACCOUNT if o.data.get("key_id") == PLATFORM_ACCOUNT else o.hex64("key_id")
        return cls(key_id, o.integer("available"), o.integer("held"))
