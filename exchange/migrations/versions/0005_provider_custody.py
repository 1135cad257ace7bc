"""provider custody: who holds a listing's data, its row root, the delivery window.

``listing`` gains ``custody`` (``provider`` | ``exchange``; the listings that
exist were all in exchange custody) and ``delivery_window_s``;
``listing_version`` gains ``row_root`` (the SM3 row-tree root the provider
signed). ``orders`` gains ``custody`` and ``delivery_deadline`` (left empty for
the orders placed before: they predate the delivery window). ``order_delivery``
lists the ``delivery.issued`` records of each order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("listing") as batch:
        batch.add_column(sa.Column("custody", _text(16), nullable=False, server_default="exchange"))
        batch.add_column(
            sa.Column("delivery_window_s", sa.Integer(), nullable=False, server_default="86400")
        )
    with op.batch_alter_table("listing_version") as batch:
        batch.add_column(sa.Column("row_root", _text(64), nullable=True))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("custody", _text(16), nullable=False, server_default="exchange"))
        batch.add_column(sa.Column("delivery_deadline", sa.BigInteger(), nullable=True))
        batch.create_index(
            batch.f("ix_orders_delivery_deadline"), ["delivery_deadline"], unique=False
        )
    op.create_table(
        "order_delivery",
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("order_id", _text(36), nullable=False),
        sa.PrimaryKeyConstraint("leaf_hash"),
    )
    op.create_index(
        op.f("ix_order_delivery_order_id"), "order_delivery", ["order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_order_delivery_order_id"), table_name="order_delivery")
    op.drop_table("order_delivery")
    # ALTER TABLE ... DROP COLUMN in place, on SQLite too (3.35+): a batch copy of
    # ``listing`` would drop it under the foreign keys of the tables that reference
    # it, which cannot be switched off inside the migration's transaction.
    op.drop_index(op.f("ix_orders_delivery_deadline"), table_name="orders")
    op.drop_column("orders", "delivery_deadline")
    op.drop_column("orders", "custody")
    op.drop_column("listing_version", "row_root")
    op.drop_column("listing", "delivery_window_s")
    op.drop_column("listing", "custody")
