"""``GET /health`` and the error envelope, over real HTTP to a real uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from devnet.launcher import Devnet
from exchange.app import create_app
from exchange.settings import Settings
from ledger.protocol.health import ChainStatus, Health


def test_health_without_a_chain_reports_the_database(tmp_path: Path, live_server: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    with live_server(app) as url:
        body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok"
    assert body["database"] == {
        "ok": True,
        "backend": "sqlite",
        "url": f"sqlite:///{(tmp_path / 'exchange.db').resolve()}",
        "detail": None,
    }
    assert body["chain"]["configured"] is False
    assert (tmp_path / "exchange.db").exists()


def test_health_reports_chain_and_missing_registry(
    tmp_path: Path, devnet: Devnet, live_server: Any
) -> None:
    nowhere = "0x" + "11" * 20
    app = create_app(Settings(data_dir=tmp_path, rpc_url=devnet.rpc_url, registry_address=nowhere))
    with live_server(app) as url:
        response = httpx.get(f"{url}/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["chain"]["chain_id"] == 31337
    assert body["chain"]["registry_deployed"] is False
    assert nowhere in body["chain"]["detail"]


def test_health_reports_an_unreachable_chain(tmp_path: Path, live_server: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path, rpc_url="http://127.0.0.1:9"))
    with live_server(app) as url:
        response = httpx.get(f"{url}/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["chain"]["ok"] is False and body["chain"]["detail"]
    health = Health.from_dict(body)  # the shape the SDK parses is the one served
    assert not health.ok and health.database.ok
    assert health.chain == ChainStatus(
        ok=False, configured=True, rpc_url="http://127.0.0.1:9", detail=body["chain"]["detail"]
    )


def test_unknown_route_and_openapi(tmp_path: Path, live_server: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    with live_server(app) as url:
        missing = httpx.get(f"{url}/no-such-thing")
        wrong_method = httpx.delete(f"{url}/health")
        spec = httpx.get(f"{url}/openapi.json").json()
        docs = httpx.get(f"{url}/docs")
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "message": "Not Found"}
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    assert "/health" in spec["paths"]
    assert docs.status_code == 200
