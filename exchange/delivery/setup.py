"""Wiring for ``create_app``: the content and delivery routers, and the app's
content store (``app.state.content_store``, opened on first use so that an
exchange that never handles content creates no master key)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from exchange.content import ContentStore, content_store_from_settings

__all__ = ["ContentStoreDep", "content_store", "install_delivery"]

TAGS = [
    {
        "name": "content",
        "description": "Providers upload a listing version's dataset (streamed; SM3 checked "
        "against the listing's digest; SM4-GCM at rest). See docs/custody.md.",
    },
    {
        "name": "delivery",
        "description": "Buyers receive the content key in an SM2 envelope (delivery.issued, "
        "logged by the exchange) and download the ciphertext with HTTP Range.",
    },
]

_lock = threading.Lock()


def content_store(request: Request) -> ContentStore:
    """The app's content store (``content_dir``, ``content_master_key_file``)."""
    state = request.app.state
    store: ContentStore | None = getattr(state, "content_store", None)
    if store is None:
        with _lock:
            store = getattr(state, "content_store", None)
            if store is None:
                store = content_store_from_settings(state.settings)
                state.content_store = store
    return store


ContentStoreDep = Annotated[ContentStore, Depends(content_store)]


def install_delivery(app: FastAPI) -> None:
    from exchange.api import content, delivery

    app.state.content_store = None
    app.openapi_tags = [*(app.openapi_tags or []), *TAGS]
    app.include_router(content.router)
    app.include_router(delivery.router)
