"""order lifecycle: delivery time, revocation, subscription renewal link.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 01:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("delivered_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column(
                "revocation_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True
            )
        )
        batch.add_column(
            sa.Column("renews_order_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True)
        )
        batch.create_index(batch.f("ix_orders_renews_order_id"), ["renews_order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index(batch.f("ix_orders_renews_order_id"))
        batch.drop_column("renews_order_id")
        batch.drop_column("revocation_reason")
        batch.drop_column("revoked_at")
        batch.drop_column("delivered_at")
