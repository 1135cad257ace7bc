"""withdrawals: participants' requests to withdraw available funds and their decisions.

``withdrawal`` (exchange.payouts.models): one row per ``withdrawal.requested``
record, its state (pending, paid, rejected) and the operator's decision. The
movements a withdrawal causes (``withdraw_hold``, ``withdraw_paid``,
``withdraw_release``) are rows of ``account_movement``, whose ``kind`` column
already holds them: no change there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "withdrawal",
        sa.Column("id", _text(36), nullable=False),
        sa.Column("key_id", _text(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("destination", _text(200), nullable=False),
        sa.Column("state", _text(16), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("requested_leaf_hash", _text(64), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", _text(64), nullable=True),
        sa.Column("decision_leaf_hash", _text(64), nullable=True),
        sa.Column("transfer_reference", _text(200), nullable=True),
        sa.Column("reason", _text(500), nullable=True),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.CheckConstraint("amount > 0", name="withdrawal_amount_positive"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_withdrawal_key_id"), "withdrawal", ["key_id"], unique=False)
    op.create_index(op.f("ix_withdrawal_state"), "withdrawal", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_withdrawal_state"), table_name="withdrawal")
    op.drop_index(op.f("ix_withdrawal_key_id"), table_name="withdrawal")
    op.drop_table("withdrawal")
