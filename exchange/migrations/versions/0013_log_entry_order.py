"""log entries name their order: ``log_entry.order_id`` and its index.

``order_id`` holds the ``payload.order_id`` of the entry's record when it is a
string (of at most 200 characters), so that an order's records
(``GET /orders/{id}/records``) are read through the index
``(order_id, index)`` instead of a scan of the log from the order's placement.
Existing entries are back-filled from their leaves in one statement.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = {
    "sqlite": (
        "UPDATE log_entry"
        " SET order_id = json_extract(CAST(leaf AS TEXT), '$.record.payload.order_id')"
        " WHERE json_type(CAST(leaf AS TEXT), '$.record.payload.order_id') = 'text'"
        " AND length(json_extract(CAST(leaf AS TEXT), '$.record.payload.order_id')) <= 200"
    ),
    "postgresql": (
        "UPDATE log_entry"
        " SET order_id = convert_from(leaf, 'UTF8')::jsonb #>> '{record,payload,order_id}'"
        " WHERE jsonb_typeof(convert_from(leaf, 'UTF8')::jsonb #> '{record,payload,order_id}')"
        " = 'string'"
        " AND length(convert_from(leaf, 'UTF8')::jsonb #>> '{record,payload,order_id}') <= 200"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("log_entry") as batch:
        batch.add_column(
            sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
    op.execute(sa.text(_BACKFILL[op.get_bind().dialect.name]))
    op.create_index("ix_log_entry_order", "log_entry", ["order_id", "index"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_log_entry_order", table_name="log_entry")
    with op.batch_alter_table("log_entry") as batch:
        batch.drop_column("order_id")
