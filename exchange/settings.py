"""Configuration of the exchange, from ``SHANCHENG_*`` environment variables or arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHANCHENG_", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SHANCHENG_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; defaults to a SQLite file in data_dir.",
    )
    rpc_url: str | None = Field(default=None, description="JSON-RPC endpoint of the anchor chain.")
    registry_address: str | None = Field(default=None, description="AnchorRegistry address.")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'exchange.db').resolve()}"
