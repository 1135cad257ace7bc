"""``GET /metrics``: the exchange's metrics in Prometheus' text format.

Scrapers do not sign requests, so ``/metrics`` is not behind the participants'
signatures. Who may read it is a setting: with ``SHANCHENG_METRICS_TOKEN`` set, any
client presenting ``Authorization: Bearer <token>``; without it, clients on the
loopback interface only (a scraper on the same host, or behind a local proxy that
restricts it). ``SHANCHENG_METRICS_ENABLED=false`` turns it off (404). It is an
operations endpoint, outside the OpenAPI document.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from exchange.api.deps import MetricsDep, SettingsDep
from exchange.errors import ExchangeError, ForbiddenError, NotFoundError
from exchange.metrics.exposition import CONTENT_TYPE
from exchange.settings import Settings

router = APIRouter(include_in_schema=False)


class MetricsUnauthenticated(ExchangeError):
    status = 401
    code = "unauthenticated"


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def metrics_access(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Refuse the request unless ``/metrics`` is on and this client may read it."""
    if not settings.metrics_enabled:
        raise NotFoundError("/metrics is turned off (SHANCHENG_METRICS_ENABLED)")
    token = settings.metrics_token
    if token is not None:
        _check_bearer(authorization, settings)
        return
    client = request.client
    if not _loopback(None if client is None else client.host):
        raise ForbiddenError(
            "/metrics answers loopback clients only; set SHANCHENG_METRICS_TOKEN to let "
            "a scraper elsewhere read it with a bearer token"
        )


def _check_bearer(authorization: str | None, settings: Settings) -> None:
    assert settings.metrics_token is not None
    expected = settings.metrics_token.get_secret_value().encode("utf-8")
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode("utf-8"), expected
    ):
        raise MetricsUnauthenticated("/metrics needs Authorization: Bearer <metrics token>")


@router.get("/metrics", dependencies=[Depends(metrics_access)])
def metrics(registry: MetricsDep) -> Response:
    return Response(registry.render(), media_type=CONTENT_TYPE)
