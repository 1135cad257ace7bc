"""reference prices: a listing's declared cost basis and the comparables table.

``listing`` gains ``cost_basis`` (JSON, nullable: the current version's declared
costs, expected units and margin). ``reference_deal`` holds one row per settled
deal (order id, listing, version, category, pricing unit, unit price, settlement
time and record) with the index ``(category, unit, settled_at)`` the market
method reads. Deals settled before this revision are not back-filled: their
listings' pricing units are in the log, and ``shancheng audit reference-price``
replays the log for any listing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("listing") as batch:
        batch.add_column(sa.Column("cost_basis", sa.JSON(), nullable=True))
    op.create_table(
        "reference_deal",
        sa.Column("order_id", _text(36), nullable=False),
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("category", _text(), nullable=False),
        sa.Column("unit", _text(16), nullable=False),
        sa.Column("unit_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.BigInteger(), nullable=False),
        sa.Column("update_frequency", _text(16), nullable=False),
        sa.Column("settled_leaf_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index(
        "ix_reference_deal_market",
        "reference_deal",
        ["category", "unit", "settled_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_reference_deal_market", table_name="reference_deal")
    op.drop_table("reference_deal")
    # in place (SQLite 3.35+), as 0005 does: a batch copy of ``listing`` would fall
    # foul of the foreign keys that reference it
    op.drop_column("listing", "cost_basis")
