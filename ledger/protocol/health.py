"""``GET /health``: the exchange's database and chain status.

``Health.status`` is ``ok``, or ``degraded`` (served with 503) when the
database does not answer or a configured chain is unreachable or lacks the
registry. (No class docstrings here: they would become OpenAPI descriptions.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ledger.records import RecordFormatError

__all__ = ["ChainStatus", "DatabaseStatus", "Health"]


def _object(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RecordFormatError("expected a JSON object", path=path)
    return data


def _optional(data: dict[str, Any], key: str, kind: type, path: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RecordFormatError(f"expected {kind.__name__} or null", path=f"{path}.{key}")
    return value


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    ok: bool
    backend: str
    url: str
    detail: str | None = None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "database") -> DatabaseStatus:
        d = _object(data, path)
        ok, backend, url = d.get("ok"), d.get("backend"), d.get("url")
        if not isinstance(ok, bool) or not isinstance(backend, str) or not isinstance(url, str):
            raise RecordFormatError("expected ok, backend and url", path=path)
        return cls(ok, backend, url, _optional(d, "detail", str, path))


@dataclass(frozen=True, slots=True)
class ChainStatus:
    ok: bool
    configured: bool
    rpc_url: str | None = None
    chain_id: int | None = None
    block_number: int | None = None
    registry_address: str | None = None
    registry_deployed: bool | None = None
    detail: str | None = None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "chain") -> ChainStatus:
        d = _object(data, path)
        ok, configured = d.get("ok"), d.get("configured")
        if not isinstance(ok, bool) or not isinstance(configured, bool):
            raise RecordFormatError("expected ok and configured", path=path)
        deployed = d.get("registry_deployed")
        if deployed is not None and not isinstance(deployed, bool):
            raise RecordFormatError("expected a boolean or null", path=f"{path}.registry_deployed")
        return cls(
            ok=ok,
            configured=configured,
            rpc_url=_optional(d, "rpc_url", str, path),
            chain_id=_optional(d, "chain_id", int, path),
            block_number=_optional(d, "block_number", int, path),
            registry_address=_optional(d, "registry_address", str, path),
            registry_deployed=deployed,
            detail=_optional(d, "detail", str, path),
        )


@dataclass(frozen=True, slots=True)
class Health:
    status: Literal["ok", "degraded"]
    database: DatabaseStatus
    chain: ChainStatus

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_dict(cls, data: Any) -> Health:
        d = _object(data, "")
        status = d.get("status")
        if status == "ok" or status == "degraded":
            return cls(
                status,
                DatabaseStatus.from_dict(d.get("database")),
                ChainStatus.from_dict(d.get("chain")),
            )
        raise RecordFormatError("expected 'ok' or 'degraded'", path="status")
