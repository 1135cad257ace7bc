"""Wiring for ``create_app``: the tables and routers of accounts, quotes and orders."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from exchange.accounts.models import create_account_tables
from exchange.api import accounts as accounts_api
from exchange.api import orders as orders_api
from exchange.api import quotes as quotes_api
from exchange.idempotency import create_idempotency_table
from exchange.orders.models import create_order_tables

__all__ = ["install_orders"]

TAGS = [
    {
        "name": "accounts",
        "description": "Integer fen balances (available, held in escrow), operator deposits "
        "(deposit.credited records) and the append-only movement ledger.",
    },
    {
        "name": "orders",
        "description": "Exchange-signed quotes; orders (order.placed, buyer-signed) that move "
        "the price into escrow atomically with their log record; limited offers never "
        "oversell. Money-moving POSTs take an Idempotency-Key header.",
    },
]


def install_orders(app: FastAPI, engine: Engine) -> None:
    create_account_tables(engine)
    create_order_tables(engine)
    create_idempotency_table(engine)
    app.openapi_tags = [*(app.openapi_tags or []), *TAGS]
    app.include_router(accounts_api.router)
    app.include_router(quotes_api.router)
    app.include_router(orders_api.router)
