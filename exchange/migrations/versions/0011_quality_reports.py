"""quality: quality reports, their countersignatures, and the grade in search.

``quality_report`` (exchange.listings.quality): one row per ``quality.reported``
record; ``quality_countersignature``: one row per ``quality.countersigned``
record (docs/quality.md).

Revision ID: 0011
Revises: 0012 (0012, reference prices, landed on main first; this one follows it)
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0011"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "quality_report",
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("report_sm3", _text(64), nullable=False),
        sa.Column("signer_key_id", _text(64), nullable=False),
        sa.Column("signer_role", _text(16), nullable=False),
        sa.Column("grade", _text(1), nullable=False),
        sa.Column("score_bps", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_hash"),
        sa.UniqueConstraint(
            "listing_id", "version", "report_sm3", "signer_key_id", name="uq_quality_report"
        ),
    )
    op.create_index(
        op.f("ix_quality_report_listing_id"), "quality_report", ["listing_id"], unique=False
    )
    op.create_index(
        op.f("ix_quality_report_report_sm3"), "quality_report", ["report_sm3"], unique=False
    )
    op.create_table(
        "quality_countersignature",
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("report_sm3", _text(64), nullable=False),
        sa.Column("assessor_key_id", _text(64), nullable=False),
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("countersigned_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("listing_id", "version", "report_sm3", "assessor_key_id"),
    )

    # plain ALTER TABLE ADD COLUMN (a batch copy of the table would drop its triggers)
    op.add_column("listing_search", sa.Column("grade", _text(1), nullable=True))


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place (a batch copy would drop the triggers)
    op.drop_column("listing_search", "grade")
    op.drop_table("quality_countersignature")
    op.drop_index(op.f("ix_quality_report_report_sm3"), table_name="quality_report")
    op.drop_index(op.f("ix_quality_report_listing_id"), table_name="quality_report")
    op.drop_table("quality_report")
