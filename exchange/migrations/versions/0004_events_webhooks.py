"""events and webhooks: anchor finality in the feed, webhooks and their attempts.

``event_anchor`` (exchange.events.models): one row per final anchor, with the
feed slot it was recorded at. ``webhook`` and ``webhook_attempt``
(exchange.webhooks.models): participants' delivery endpoints, their cursor,
retry state and lease, and every delivery attempt.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "event_anchor",
        sa.Column("tree_size", _KEY, autoincrement=False, nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("from_size", sa.BigInteger(), nullable=False),
        sa.Column("root", _text(64), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("registry_address", _text(64), nullable=False),
        sa.Column("tx_hash", _text(80), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    op.create_index(op.f("ix_event_anchor_slot"), "event_anchor", ["slot"], unique=False)
    op.create_table(
        "webhook",
        sa.Column("id", _text(36), nullable=False),
        sa.Column("owner_key_id", _text(64), nullable=False),
        sa.Column("owner_is_operator", sa.Boolean(), nullable=False),
        sa.Column("url", _text(2048), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("cursor", _text(40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("failing_since", sa.BigInteger(), nullable=True),
        sa.Column("last_error", _text(500), nullable=True),
        sa.Column("last_delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", _text(32), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_webhook_owner_key_id"), "webhook", ["owner_key_id"], unique=False)
    op.create_table(
        "webhook_attempt",
        sa.Column("id", _KEY, nullable=False),
        sa.Column("webhook_id", _text(36), nullable=False),
        sa.Column("event_id", _text(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", _text(500), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_webhook_attempt_webhook_id"), "webhook_attempt", ["webhook_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_attempt_webhook_id"), table_name="webhook_attempt")
    op.drop_table("webhook_attempt")
    op.drop_index(op.f("ix_webhook_owner_key_id"), table_name="webhook")
    op.drop_table("webhook")
    op.drop_index(op.f("ix_event_anchor_slot"), table_name="event_anchor")
    op.drop_table("event_anchor")
