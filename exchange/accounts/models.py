"""Account tables: one balance row per participant and the append-only movements.

Balances are integer fen. ``available`` is spendable, ``held`` is in escrow
for placed orders. Both are never negative (a CHECK constraint, and every
debit is a conditional ``UPDATE ... WHERE available >= amount``). Every change
of a balance writes one :class:`AccountMovement` in the same transaction, so
``available = Σ available_delta`` and ``held = Σ held_delta`` over the
participant's movements (see :func:`exchange.accounts.service.derived_balance`).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Integer
from sqlmodel import Field, SQLModel

_ROWID = BigInteger().with_variant(Integer(), "sqlite")


class MovementKind(StrEnum):
    DEPOSIT = "deposit"
    """An operator credited money: available += amount."""
    ESCROW_HOLD = "escrow_hold"
    """An order was placed: available -= amount, held += amount."""
    ESCROW_RELEASE = "escrow_release"
    """Settlement took the buyer's escrow: held -= amount."""
    REFUND = "refund"
    """Escrow (or its unused part) returned to the buyer: held -= a, available += a."""
    PAYOUT = "payout"
    """A provider's share of a settlement: available += amount."""
    FEE = "fee"
    """The platform fee of a settlement (credited to the platform account)."""
    CLAWBACK = "clawback"
    """A refund of a settled order taken back from a payee: available -= amount."""
    SETTLED_REFUND = "settled_refund"
    """A refund of a settled order paid to the buyer from the clawbacks: available += amount."""
    WITHDRAW_HOLD = "withdraw_hold"
    """A withdrawal was requested: available -= amount, held += amount."""
    WITHDRAW_PAID = "withdraw_paid"
    """An operator paid a withdrawal out: held -= amount (the money left the exchange)."""
    WITHDRAW_RELEASE = "withdraw_release"
    """An operator rejected a withdrawal: held -= amount, available += amount."""


class Account(SQLModel, table=True):
    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint("available >= 0", name="account_available_not_negative"),
        CheckConstraint("held >= 0", name="account_held_not_negative"),
    )

    key_id: str = Field(primary_key=True, max_length=64)
    available: int = Field(default=0, sa_type=BigInteger)
    held: int = Field(default=0, sa_type=BigInteger)
    created_at: int = Field(sa_type=BigInteger)


class AccountMovement(SQLModel, table=True):
    """One change of one account (append-only: never updated or deleted)."""

    __tablename__ = "account_movement"
    __table_args__ = (CheckConstraint("amount > 0", name="account_movement_amount_positive"),)

    id: int | None = Field(default=None, sa_type=_ROWID, primary_key=True)
    key_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    amount: int = Field(sa_type=BigInteger)
    available_delta: int = Field(sa_type=BigInteger)
    held_delta: int = Field(sa_type=BigInteger)
    order_id: str | None = Field(default=None, index=True, max_length=36)
    reference: str | None = Field(default=None, max_length=200)
    leaf_hash: str = Field(max_length=64)
    """Hex leaf hash of the log record that caused the movement."""
    created_at: int = Field(sa_type=BigInteger)
