"""The nonce store: nonces seen in the skew window, shared by all API workers."""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel


class AuthNonce(SQLModel, table=True):
    """A (key id, nonce) pair already used; kept until ``expires_at`` (ms since the
    epoch), after which a replay is refused as stale anyway, then pruned."""

    __tablename__ = "auth_nonce"

    key_id: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(primary_key=True, max_length=128)
    expires_at: int = Field(sa_type=BigInteger, index=True)


auth_nonce_table = SQLModel.metadata.tables["auth_nonce"]
