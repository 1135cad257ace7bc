"""The computation table: one row per ``computation.requested`` record.

A computation is ``pending`` from the buyer's request until a provider of the
listing answers it: ``completed`` (its encrypted result stored beside, see
:mod:`exchange.computations.results`) or ``refused`` (``reason``).
``epsilon_reserved`` is the micro-ε the request took from the order's allowance
(0 without differential privacy); a refusal gives it (and the query) back.
``row_version`` makes two concurrent answers to one computation have exactly one
outcome (``exchange.records``).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, Column, Integer, Text
from sqlmodel import Field, SQLModel


class ComputationState(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    REFUSED = "refused"


_computation_row_version = Column("row_version", Integer, nullable=False)


class Computation(SQLModel, table=True):
    __tablename__ = "computation"
    __mapper_args__ = {"version_id_col": _computation_row_version}

    id: str = Field(primary_key=True, max_length=36)
    order_id: str = Field(index=True, max_length=36)
    listing_id: str = Field(max_length=36)
    version: int
    buyer_key_id: str = Field(max_length=64)
    sql: str = Field(sa_type=Text)
    query_sm3: str = Field(max_length=64)
    """Hex SM3 of the SQL's UTF-8 bytes, as the provider's answer must name it."""
    state: str = Field(index=True, max_length=16)
    epsilon_reserved: int = Field(sa_type=BigInteger)
    requested_at: int = Field(sa_type=BigInteger)
    requested_leaf_hash: str = Field(max_length=64)
    answered_at: int | None = Field(default=None, sa_type=BigInteger)
    answer_leaf_hash: str | None = Field(default=None, max_length=64)
    """Hex leaf hash of the provider's ``computation.completed`` / ``.refused`` record."""
    reason: str | None = Field(default=None, max_length=64)
    result_sm3: str | None = Field(default=None, max_length=64)
    ciphertext_sm3: str | None = Field(default=None, max_length=64)
    ciphertext_size: int | None = Field(default=None, sa_type=BigInteger)
    rows_scanned: int | None = Field(default=None, sa_type=BigInteger)
    row_version: int = Field(default=1, sa_column=_computation_row_version)
