"""Typed answers of the computation endpoints (``/computations``) and the buyer's
checked answer to a query: frozen dataclasses with ``from_dict``, strict about what
the SDK relies on and tolerant of added fields (as :mod:`clients.sdk.market_models`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clients.sdk.models import Appended
from ledger.computation.result import Cell, ResultTable
from ledger.protocol.reader import JSONObject
from ledger.records import SignedRecord

__all__ = [
    "Computation",
    "ComputationPage",
    "LoggedRecord",
    "QueryResult",
    "ResultUploaded",
]


class _Obj(JSONObject):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A signed record of a computation and its log index (unchecked as read)."""

    index: int
    record: SignedRecord

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LoggedRecord:
        o = _Obj(data, where)
        return cls(o.integer("index"), SignedRecord.from_dict(o.mapping("record")))


@dataclass(frozen=True, slots=True)
class Computation:
    """A query on a computation order (``state``: pending, completed, refused) with
    its records: the buyer's ``computation.requested`` and, once answered, the
    provider's ``computation.completed`` / ``computation.refused`` (or the
    exchange's refusal, ``agent_timeout``). ``epsilon_reserved`` is a decimal string."""

    id: str
    order_id: str
    listing_id: str
    version: int
    buyer: str
    sql: str
    query_sm3: str
    state: str
    epsilon_reserved: str
    requested_at: int
    answered_at: int | None
    reason: str | None
    result_sm3: str | None
    ciphertext_sm3: str | None
    ciphertext_size: int | None
    rows_scanned: int | None
    records: tuple[LoggedRecord, ...]
    log: Appended | None = None

    @classmethod
    def from_dict(cls, data: Any, *, path: str = "", log: Appended | None = None) -> Computation:
        o = _Obj(data, path)
        return cls(
            id=o.text("id"),
            order_id=o.text("order_id"),
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            buyer=o.hex64("buyer"),
            sql=o.text("sql"),
            query_sm3=o.hex64("query_sm3"),
            state=o.text("state"),
            epsilon_reserved=o.text("epsilon_reserved"),
            requested_at=o.integer("requested_at"),
            answered_at=o.opt_integer("answered_at"),
            reason=o.opt_text("reason"),
            result_sm3=o.hex64("result_sm3") if o.has("result_sm3") else None,
            ciphertext_sm3=o.hex64("ciphertext_sm3") if o.has("ciphertext_sm3") else None,
            ciphertext_size=o.opt_integer("ciphertext_size"),
            rows_scanned=o.opt_integer("rows_scanned"),
            records=o.items("records", LoggedRecord.from_dict),
            log=log,
        )

    @classmethod
    def from_changed(cls, data: Any) -> Computation:
        """``{"computation", "log"}``: the answer of a request or an answer."""
        o = _Obj(data, "")
        log = Appended.from_dict(o.raw("log"), path="log")
        return cls.from_dict(o.raw("computation"), path="computation", log=log)

    @property
    def epsilon(self) -> Decimal:
        return Decimal(self.epsilon_reserved)

    def answer_record(self) -> LoggedRecord | None:
        """The record that answered it (``None`` while pending)."""
        for logged in self.records:
            if logged.record.record.type != "computation.requested":
                return logged
        return None


@dataclass(frozen=True, slots=True)
class ComputationPage:
    """A page of an order's computations, newest first."""

    items: tuple[Computation, ...]
    next_offset: int | None

    @classmethod
    def from_dict(cls, data: Any) -> ComputationPage:
        o = _Obj(data, "")
        return cls(
            items=o.items("items", lambda item, where: Computation.from_dict(item, path=where)),
            next_offset=o.opt_integer("next_offset"),
        )


@dataclass(frozen=True, slots=True)
class ResultUploaded:
    computation_id: str
    ciphertext_sm3: str
    ciphertext_size: int

    @classmethod
    def from_dict(cls, data: Any) -> ResultUploaded:
        o = _Obj(data, "")
        return cls(
            o.text("computation_id"), o.hex64("ciphertext_sm3"), o.integer("ciphertext_size")
        )


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A query's answer after every check of :meth:`~clients.sdk.ExchangeClient.query`:
    the provider of the listing signed it, the ciphertext and the plaintext have the
    SM3 digests it states, and it decrypted for this computation only.
    ``epsilon_spent`` is the ε it took from the order's budget (0 without privacy);
    ``rows_scanned`` the rows the provider's engine read; ``provider`` the key id that
    signed the answer; ``log_index`` where its record is in the log."""

    computation_id: str
    order_id: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    epsilon_spent: Decimal
    rows_scanned: int
    provider: str
    log_index: int
    result_sm3: str

    @classmethod
    def of(
        cls,
        computation: Computation,
        table: ResultTable,
        *,
        epsilon_spent: Decimal,
        rows_scanned: int,
        provider: str,
        log_index: int,
    ) -> QueryResult:
        return cls(
            computation_id=computation.id,
            order_id=computation.order_id,
            columns=table.columns,
            rows=table.rows,
            epsilon_spent=epsilon_spent,
            rows_scanned=rows_scanned,
            provider=provider,
            log_index=log_index,
            result_sm3=table.sm3_hex(),
        )

    def records(self) -> list[dict[str, Cell]]:
        """The rows as ``{column: value}`` dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "computation_id": self.computation_id,
            "order_id": self.order_id,
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "epsilon_spent": format(self.epsilon_spent, "f"),
            "rows_scanned": self.rows_scanned,
            "provider": self.provider,
            "log_index": self.log_index,
            "result_sm3": self.result_sm3,
        }
