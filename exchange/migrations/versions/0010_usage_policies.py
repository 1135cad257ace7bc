"""usage policies: listing and version policies, order declarations, cross-border assessments.

``listing.policy`` / ``listing_version.policy``: the usage policy (JSON, null: the
default policy). ``orders.declaration`` (JSON), ``orders.policy_digest`` (the SM3 of
the policy the order agreed to) and ``orders.use_until`` (end of use when the policy
limits it). ``crossborder_assessment``: the operator's latest decision per listing
and buyer (exchange.policies.models).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("listing") as batch:
        batch.add_column(sa.Column("policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("listing_version") as batch:
        batch.add_column(sa.Column("policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("declaration", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("policy_digest", _text(64), nullable=True))
        batch.add_column(sa.Column("use_until", sa.BigInteger(), nullable=True))
    op.create_table(
        "crossborder_assessment",
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("buyer_key_id", _text(64), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("reference", _text(200), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.Column("assessed_at", sa.BigInteger(), nullable=False),
        sa.Column("operator_key_id", _text(64), nullable=False),
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("listing_id", "buyer_key_id"),
    )
    op.create_index(
        op.f("ix_crossborder_assessment_buyer_key_id"),
        "crossborder_assessment",
        ["buyer_key_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_crossborder_assessment_buyer_key_id"), table_name="crossborder_assessment"
    )
    op.drop_table("crossborder_assessment")
    # ALTER TABLE ... DROP COLUMN in place (see 0006: a batch copy of ``listing``
    # would fall foul of the foreign keys that reference it).
    op.drop_column("orders", "use_until")
    op.drop_column("orders", "policy_digest")
    op.drop_column("orders", "declaration")
    op.drop_column("listing_version", "policy")
    op.drop_column("listing", "policy")
