"""Configuration of the exchange, from ``SHANCHENG_*`` environment variables or arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
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

    log_key_file: Path | None = Field(
        default=None,
        description="PEM (PKCS#8) SM2 private key of the log; default: "
        "data_dir/exchange-key.pem, generated on first start with mode 0600.",
    )
    log_key_password_file: Path | None = Field(
        default=None,
        description="File holding the password of the log key (first line); optional.",
    )
    sequencer_enabled: bool = Field(
        default=True, description="Run the sequencer thread inside the API process."
    )
    sequencer_interval: float = Field(
        default=1.0, gt=0, description="Seconds between the sequencer's integration runs."
    )
    sequencer_max_batch: int = Field(
        default=10_000, ge=1, description="Most entries one checkpoint integrates."
    )

    # -- anchoring worker (exchange/anchoring) ----------------------------------------
    anchor_worker_enabled: bool = Field(
        default=True,
        description="Run the anchoring worker inside the API process when rpc_url and "
        "registry_address are set (it steps aside if another worker holds the lock).",
    )
    anchor_interval_s: float = Field(
        default=60.0, ge=0, description="Anchor the latest checkpoint this long after the last."
    )
    anchor_size_threshold: int = Field(
        default=1000, ge=1, description="Anchor at once when this many leaves are unanchored."
    )
    anchor_confirmations: int = Field(
        default=6, ge=1, description="Blocks (including its own) that make an anchor final."
    )
    anchor_key: SecretStr | None = Field(
        default=None,
        description="Hex private key of the anchorer account; required off the devnet "
        "(on chain 31337 the first public anvil TEST account is used when unset).",
    )
    anchor_poll_s: float = Field(
        default=2.0, gt=0, description="Seconds between the anchoring worker's passes."
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'exchange.db').resolve()}"
