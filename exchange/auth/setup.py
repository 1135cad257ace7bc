"""Wiring for ``create_app``: the tables of participants, nonces and listings, and
the request authenticator in ``app.state.authenticator``."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from exchange.auth.verifier import Authenticator, load_operator_keys
from exchange.db import create_tables as db_create_tables
from exchange.settings import Settings

__all__ = ["TABLES", "create_tables", "install_auth"]

TABLES = (
    "auth_nonce",
    "participant",
    "listing",
    "listing_provider",
    "listing_version",
)


def create_tables(engine: Engine) -> None:
    """Create the tables if missing (safe when several workers start at once)."""
    import exchange.auth.models
    import exchange.listings.models
    import exchange.participants.models  # noqa: F401  (register the tables)

    db_create_tables(engine, TABLES)


def operator_pems(settings: Settings) -> list[str]:
    pems = list(settings.operator_public_keys)
    if settings.operator_keys_file is not None:
        pems.append(settings.operator_keys_file.read_text(encoding="ascii"))
    return pems


def install_auth(app: FastAPI, settings: Settings, engine: Engine) -> None:
    create_tables(engine)
    app.state.authenticator = Authenticator(
        engine, load_operator_keys(operator_pems(settings)), skew_s=settings.auth_clock_skew_s
    )
