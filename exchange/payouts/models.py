"""The withdrawal table: one row per ``withdrawal.requested`` record and its decision.

States::

    pending (amount held) ─► paid      (withdrawal.paid, an operator: held −= amount)
                          └► rejected  (withdrawal.rejected, an operator: held → available)

A withdrawal is decided once: ``row_version`` (the optimistic lock of
:mod:`exchange.records`) makes the second of two concurrent decisions fail at
flush, and a decided one is refused before (409 ``withdrawal_decided``).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, Integer
from sqlmodel import Field, SQLModel


class WithdrawalState(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    REJECTED = "rejected"


_withdrawal_row_version = Column("row_version", Integer, nullable=False)


class Withdrawal(SQLModel, table=True):
    __tablename__ = "withdrawal"
    __mapper_args__ = {"version_id_col": _withdrawal_row_version}
    __table_args__ = (CheckConstraint("amount > 0", name="withdrawal_amount_positive"),)

    id: str = Field(primary_key=True, max_length=36)
    """The UUID the participant's ``withdrawal.requested`` record names."""
    key_id: str = Field(index=True, max_length=64)
    """Who withdraws (the record's actor): the account the amount is held on."""
    amount: int = Field(sa_type=BigInteger)
    destination: str = Field(max_length=200)
    """Where the money goes outside (a bank account reference), as the participant wrote it."""
    state: str = Field(index=True, max_length=16)
    requested_at: int = Field(sa_type=BigInteger)
    requested_leaf_hash: str = Field(max_length=64)
    decided_at: int | None = Field(default=None, sa_type=BigInteger)
    decided_by: str | None = Field(default=None, max_length=64)
    """The operator's key id."""
    decision_leaf_hash: str | None = Field(default=None, max_length=64)
    transfer_reference: str | None = Field(default=None, max_length=200)
    """Paid: the outside transfer's reference, as the operator recorded it."""
    reason: str | None = Field(default=None, max_length=500)
    """Rejected: why."""
    row_version: int = Field(default=1, sa_column=_withdrawal_row_version)
