"""computations: offers on listing versions, order allowances, the computation table.

``listing.computation`` / ``listing_version.computation``: the computation offer
(JSON, null: none). ``orders.queries_left`` / ``orders.epsilon_left`` (micro-ε):
a computation order's allowance. ``computation`` (exchange.computations.models):
one row per ``computation.requested`` record and its answer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("listing") as batch:
        batch.add_column(sa.Column("computation", sa.JSON(), nullable=True))
    with op.batch_alter_table("listing_version") as batch:
        batch.add_column(sa.Column("computation", sa.JSON(), nullable=True))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("queries_left", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("epsilon_left", sa.BigInteger(), nullable=True))
    op.create_table(
        "computation",
        sa.Column("id", _text(36), nullable=False),
        sa.Column("order_id", _text(36), nullable=False),
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("buyer_key_id", _text(64), nullable=False),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.Column("query_sm3", _text(64), nullable=False),
        sa.Column("state", _text(16), nullable=False),
        sa.Column("epsilon_reserved", sa.BigInteger(), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("requested_leaf_hash", _text(64), nullable=False),
        sa.Column("answered_at", sa.BigInteger(), nullable=True),
        sa.Column("answer_leaf_hash", _text(64), nullable=True),
        sa.Column("reason", _text(64), nullable=True),
        sa.Column("result_sm3", _text(64), nullable=True),
        sa.Column("ciphertext_sm3", _text(64), nullable=True),
        sa.Column("ciphertext_size", sa.BigInteger(), nullable=True),
        sa.Column("rows_scanned", sa.BigInteger(), nullable=True),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_computation_order_id"), "computation", ["order_id"], unique=False)
    op.create_index(op.f("ix_computation_state"), "computation", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_computation_state"), table_name="computation")
    op.drop_index(op.f("ix_computation_order_id"), table_name="computation")
    op.drop_table("computation")
    # ALTER TABLE ... DROP COLUMN in place, on SQLite too (3.35+): a batch copy of
    # ``listing`` would drop it under the foreign keys of the tables that reference
    # it, which cannot be switched off inside the migration's transaction.
    op.drop_column("orders", "epsilon_left")
    op.drop_column("orders", "queries_left")
    op.drop_column("listing_version", "computation")
    op.drop_column("listing", "computation")
