"""certificates: registration certificates of listing versions and their history.

``certificate`` (exchange.certificates.models): one row per issued certificate,
numbered ``SC-<year>-<seq>`` (``seq`` gap-free per year, unique with the year),
one per listing version. ``certificate_event``: the leaf hashes of its records in
order (the log gives their indexes).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "certificate",
        sa.Column("number", _text(24), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("listing_id", _text(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", _text(), nullable=False),
        sa.Column("content_digest", _text(64), nullable=False),
        sa.Column("row_root", _text(64), nullable=True),
        sa.Column("rights", sa.JSON(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=False),
        sa.Column("state", _text(24), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
        sa.UniqueConstraint("listing_id", "version", name="uq_certificate_listing_version"),
        sa.UniqueConstraint("year", "seq", name="uq_certificate_year_seq"),
    )
    op.create_index(op.f("ix_certificate_listing_id"), "certificate", ["listing_id"], unique=False)
    op.create_table(
        "certificate_event",
        sa.Column("number", _text(24), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record_type", _text(64), nullable=False),
        sa.Column("actor_key_id", _text(64), nullable=False),
        sa.Column("leaf_hash", _text(64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["number"], ["certificate.number"]),
        sa.PrimaryKeyConstraint("number", "position"),
    )


def downgrade() -> None:
    op.drop_table("certificate_event")
    op.drop_index(op.f("ix_certificate_listing_id"), table_name="certificate")
    op.drop_table("certificate")
