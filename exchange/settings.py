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
    append_max_batch: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most records the appender commits in one transaction (group commit).",
    )
    append_linger_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="Most milliseconds the appender waits for appends being verified "
        "before it commits what is queued (never when no other append is under way).",
    )
    append_verifiers: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Most appends parsed and SM2-verified at once; default: the CPU count.",
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

    # -- participants, request authentication, listings (exchange/auth, participants, listings)
    operator_public_keys: list[str] = Field(
        default_factory=list,
        description="SM2 public keys (SubjectPublicKeyInfo PEM) of the operators; "
        "from the environment as a JSON list of strings.",
    )
    operator_keys_file: Path | None = Field(
        default=None, description="A file of operator public key PEM blocks (added to the list)."
    )
    auth_clock_skew_s: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Most seconds a request signature's created (and a record's timestamp) "
        "may differ from the server clock; nonces are remembered this long.",
    )
    raw_append_rate_per_s: float = Field(
        default=10.0,
        gt=0,
        le=1_000_000,
        description="Records a second one key may add through the log's raw append "
        "(POST /log/records, /log/records:batch), per API worker process; more is "
        "refused with 429 rate_limited and Retry-After.",
    )
    raw_append_burst: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="Records one key may add through the raw append at once before "
        "raw_append_rate_per_s applies (a larger batch waits for a full allowance).",
    )
    quote_rate_per_s: float = Field(
        default=2.0,
        gt=0,
        le=1_000_000,
        description="Quotes a second one key may ask for (POST /listings/{id}/quotes: each "
        "costs an SM2 signature with the log key), per API worker process; more is refused "
        "with 429 rate_limited and Retry-After.",
    )
    quote_burst: int = Field(
        default=30,
        ge=1,
        le=1_000_000,
        description="Quotes one key may ask for at once before quote_rate_per_s applies.",
    )
    public_origin: str | None = Field(
        default=None,
        description="Scheme://host[:port][/prefix] clients address (behind a proxy); the "
        "signed @target-uri is checked against it. Default: the request's scheme and Host.",
    )
    web_dir: Path | None = Field(
        default=None,
        description="The explorer's browser assets: web/ with the node_modules `make setup` "
        "installs (Swagger UI, ReDoc, sm-crypto) and the verifier's src/. Default: the "
        "repository's web/.",
    )
    listing_sample_max_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description="Most bytes (RFC 8785 JSON) of a listing's sample rows.",
    )

    # -- money and content (exchange/pricing, quotes, settlement, content) -------------
    platform_fee_bp: int = Field(
        default=0, ge=0, le=10_000, description="Platform fee in basis points of each sale."
    )
    quote_ttl_s: int = Field(
        default=900, ge=1, le=7 * 24 * 3600, description="Seconds a signed quote stays valid."
    )
    certificate_validity_s: int = Field(
        default=3 * 365 * 86_400,
        ge=1,
        le=100 * 365 * 86_400,
        description="Seconds a registration certificate is valid from its issue "
        "(docs/certificates.md); renewal extends it.",
    )
    content_dir: Path | None = Field(
        default=None, description="Encrypted content store; default: data_dir/content."
    )
    content_master_key_file: Path | None = Field(
        default=None,
        description="SM4 master key wrapping content keys (hex, mode 0600); default: "
        "data_dir/content-master.key, generated on first use. See docs/custody.md.",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="Largest request body in bytes (413 payload_too_large); routes that "
        "stream large bodies (content uploads) set their own limit (exchange.limits).",
    )
    content_max_bytes: int = Field(
        default=64 * 1024**3, ge=1, description="Largest dataset upload in bytes."
    )
    acceptance_window_s: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        description="Seconds a buyer has, from the first delivery, to accept or dispute "
        "an order (its acceptance_deadline); then it is accepted automatically.",
    )
    auto_accept_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between the auto-acceptor's passes (delivered orders past "
        "their acceptance_deadline are accepted by the exchange and settled).",
    )

    # -- events and webhooks (exchange/events, exchange/webhooks) ----------------------
    events_poll_s: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="Seconds between the event feed's looks at the log and the anchors "
        "(new events reach open streams and webhooks within about this long).",
    )
    events_ping_s: float = Field(
        default=15.0, gt=0, le=3600, description="Seconds between SSE keep-alive comments."
    )
    events_stream_max_s: float = Field(
        default=600.0,
        gt=0,
        description="Most seconds one SSE response lasts; the client reconnects with "
        "Last-Event-ID (EventSource does by itself) and misses nothing.",
    )
    events_scan_max: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Most log entries one page of GET /events examines (a page may then "
        "hold fewer events than asked for; its next cursor moves past what was examined).",
    )
    webhooks_enabled: bool = Field(
        default=True, description="Run the webhook delivery worker inside the API process."
    )
    webhook_poll_s: float = Field(
        default=0.5, gt=0, le=60, description="Seconds between the delivery worker's passes."
    )
    webhook_backoff_base_s: float = Field(
        default=1.0,
        gt=0,
        description="Delay before the first retry of a failed delivery; it doubles per "
        "attempt up to webhook_backoff_cap_s, with jitter (between half and all of it).",
    )
    webhook_backoff_cap_s: float = Field(
        default=3600.0, gt=0, description="Longest delay between two delivery attempts."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Seconds one delivery may take to answer."
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=256, description="Webhooks delivered to at once per API process."
    )
    webhook_max_per_participant: int = Field(
        default=20, ge=1, le=10_000, description="Most webhooks one participant may register."
    )

    # -- /metrics (exchange/api/metrics.py) -------------------------------------------
    metrics_enabled: bool = Field(
        default=True, description="Serve /metrics (Prometheus text format); 404 when off."
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a scraper presents for /metrics (Authorization: Bearer "
        "…), from any address; unset: /metrics answers loopback clients (127.0.0.0/8, ::1) only.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'exchange.db').resolve()}"
