"""The cross-border assessment table: the operator's latest decision per buyer and listing.

One row per (listing, buyer): each ``crossborder.assessed`` record replaces it (an
approval, a rejection, a renewed validity); every decision stays on the log. An
order for processing outside CN of data that needs an assessment reads this row
(exchange.policies.service).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer
from sqlmodel import Field, SQLModel

_row_version = Column("row_version", Integer, nullable=False)


class CrossBorderAssessment(SQLModel, table=True):
    __tablename__ = "crossborder_assessment"
    __mapper_args__ = {"version_id_col": _row_version}

    listing_id: str = Field(primary_key=True, max_length=36)
    buyer_key_id: str = Field(primary_key=True, index=True, max_length=64)
    approved: bool
    reference: str = Field(max_length=200)
    """The assessment's own reference (e.g. the CAC filing number)."""
    valid_until: int | None = Field(default=None, sa_type=BigInteger)
    """End of an approval's validity (ms, exclusive); null for a rejection."""
    assessed_at: int = Field(sa_type=BigInteger)
    operator_key_id: str = Field(max_length=64)
    leaf_hash: str = Field(max_length=64)
    """Hex leaf hash of the ``crossborder.assessed`` record."""
    row_version: int = Field(default=1, sa_column=_row_version)
