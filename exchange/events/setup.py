"""Wiring for ``create_app``: the event feed and webhook routers and their two
background services (the feed watcher, the webhook delivery worker)."""

from __future__ import annotations

from fastapi import FastAPI

from exchange.periodic import PeriodicThread

__all__ = ["install_events"]

TAGS = [
    {
        "name": "events",
        "description": "What happened to your orders, settlements and the log's anchors: "
        "a cursor-paged JSON feed and Server-Sent Events resumable with Last-Event-ID "
        "(docs/events.md).",
    },
    {
        "name": "webhooks",
        "description": "The same events POSTed to your URL, signed by the exchange (RFC 9421, "
        "sm2-sm3, the log key), retried with backoff; at least once, in order.",
    },
]


def _start_watcher(app: FastAPI) -> PeriodicThread:
    from exchange.events.watcher import FeedWatcher

    watcher = FeedWatcher(app.state.session_factory, app.state.settings.events_poll_s)
    watcher.start()
    app.state.event_watcher = watcher
    return watcher


def _start_webhooks(app: FastAPI) -> PeriodicThread | None:
    from exchange.webhooks.dispatcher import WebhookDispatcher

    if not app.state.settings.webhooks_enabled:
        return None
    dispatcher = WebhookDispatcher(
        app.state.session_factory,
        app.state.log_key,
        app.state.settings,
        app.state.event_watcher,
    )
    dispatcher.start()
    app.state.webhook_dispatcher = dispatcher
    return dispatcher


def install_events(app: FastAPI) -> None:
    from exchange.api import events as events_api
    from exchange.api import webhooks as webhooks_api

    app.state.event_watcher = None
    app.state.event_streams = events_api.StreamCount()
    app.state.webhook_dispatcher = None
    app.openapi_tags = [*(app.openapi_tags or []), *TAGS]
    app.include_router(events_api.router)
    app.include_router(webhooks_api.router)
    app.state.service_starters.extend([_start_watcher, _start_webhooks])
