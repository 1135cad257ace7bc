"""Certificates through the SDK (sync and async) and ``shancheng`` on a real chain:
a real uvicorn on a SQLite file, the exchange's sequencer and anchoring worker, a
real anvil. A publication's ``certificate.issued`` and a transfer's records come
back as receipts that ``shancheng audit verify`` accepts against the chain, and
refuses once the certificate in them is altered; the CLI shows a certificate and
its history, and walks a transfer, a renewal and a cancellation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_audit_cli import invoke
from test_sdk_support import listing_content
from typer.testing import CliRunner

import clients.cli
import clients.cli._common as cli_common
from clients.sdk import APIError, AsyncExchangeClient, ExchangeClient
from devnet.deploy import ensure_registry
from devnet.launcher import Devnet
from exchange.app import create_app
from exchange.settings import Settings
from ledger.sm2 import SM2PrivateKey

pytestmark = pytest.mark.chain


@dataclass
class Stack:
    url: str
    rpc_url: str
    registry: str
    operator: SM2PrivateKey
    tmp: Path


@pytest.fixture(scope="module")
def stack(
    devnet: Devnet, tmp_path_factory: pytest.TempPathFactory, live_server: Any
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sdk-certificates")
    deployment, _ = ensure_registry(devnet.rpc_url, tmp / "deployment.json")
    operator = SM2PrivateKey.generate()
    settings = Settings(
        data_dir=tmp / "var",
        rpc_url=devnet.rpc_url,
        registry_address=deployment.registry_address,
        sequencer_interval=0.05,
        anchor_interval_s=0.2,
        anchor_confirmations=1,
        anchor_poll_s=0.05,
        operator_public_keys=[operator.public_key().to_pem().decode()],
    )
    with live_server(create_app(settings)) as url:
        yield Stack(url, devnet.rpc_url, deployment.registry_address, operator, tmp)


def _participants(stack: Stack) -> tuple[ExchangeClient, ExchangeClient, ExchangeClient]:
    provider = ExchangeClient(stack.url, key=SM2PrivateKey.generate())
    buyer = ExchangeClient(stack.url, key=SM2PrivateKey.generate())
    operator = ExchangeClient(stack.url, key=stack.operator)
    provider.register("重庆公交数据", "provider")
    buyer.register("渝新物流研究院", "buyer")
    assert provider.key_id is not None
    operator.approve_participant(provider.key_id)
    return provider, buyer, operator


def _published(provider: ExchangeClient, operator: ExchangeClient) -> str:
    assert provider.key_id is not None
    fields = {"listing_id": str(uuid.uuid4()), **listing_content(provider.key_id)}
    listing = provider.create_listing(fields)
    provider.submit_listing(listing.id)
    operator.review_listing(listing.id)
    published = operator.publish_listing(listing.id)
    assert published.certificate is not None
    return published.certificate


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    clients.cli._register_groups()
    return CliRunner()


def test_a_certificate_and_its_transfer_are_receipts_the_auditor_verifies(
    stack: Stack, cli: CliRunner
) -> None:
    provider, buyer, operator = _participants(stack)
    number = _published(provider, operator)
    cert = provider.certificate(number)
    assert cert.state == "active" and cert.holders() == {provider.key_id}
    [issued] = cert.history
    assert issued.type == "certificate.issued"

    receiver = str(buyer.key_id)
    offered = provider.offer_transfer(number, right="processing", share_bps=4_000, to=receiver)
    assert offered.state == "transfer_offered" and offered.log is not None
    assert buyer.accept_transfer(number).state == "transfer_accepted"
    approved = operator.review_certificate(number, "approve", "agreement checked")
    assert approved.state == "active"
    assert {h.participant: h.share_bps for h in approved.rights["processing"]} == {
        provider.key_id: 6_000,
        buyer.key_id: 4_000,
    }
    history = provider.certificate(number).history
    assert [h.type for h in history] == [
        "certificate.issued",
        "certificate.transfer_offered",
        "certificate.transfer_accepted",
        "certificate.transfer_approved",
    ]
    assert [c.number for c in buyer.certificates(listing=cert.listing_id)] == [number]

    chain = ["--rpc", stack.rpc_url, "--registry", stack.registry]
    for record in (history[0], history[-1]):
        bundle = provider.wait_for_receipt(record.index, timeout=60, interval=0.05)
        assert bundle.record.record.type == record.type
        path = stack.tmp / f"receipt-{record.index}.json"
        path.write_text(bundle.to_json(indent=2), encoding="utf-8")
        out = invoke(cli, "audit", "verify", path, *chain)
        assert out.exit_code == 0, out
        assert "receipt verified against the chain" in out.stdout

    # the issued certificate with its holders changed no longer verifies
    bundle = provider.wait_for_receipt(history[0].index, timeout=60, interval=0.05)
    data = json.loads(bundle.to_json())
    data["record"]["record"]["payload"]["rights"]["holding"][0]["participant"] = "0" * 64
    forged = stack.tmp / "forged.json"
    forged.write_text(json.dumps(data), encoding="utf-8")
    out = invoke(cli, "audit", "verify", forged, *chain)
    assert out.exit_code == 1, out
    assert "actor_signature" in out.stdout + (out.message or "")
    for client in (provider, buyer, operator):
        client.close()


def test_the_async_client_renews_and_cancels(stack: Stack) -> None:
    provider, buyer, operator = _participants(stack)
    number = _published(provider, operator)

    async def story() -> None:
        async with (
            AsyncExchangeClient(stack.url, key=provider.key) as holder,
            AsyncExchangeClient(stack.url, key=stack.operator) as op,
        ):
            cert = await holder.certificate(number)
            until = cert.valid_until + 86_400_000
            requested = await holder.request_renewal(number, until)
            assert requested.state == "renewal_pending"
            assert requested.pending is not None and requested.pending["valid_until"] == until
            renewed = await op.review_certificate(number, "approve", "ok", valid_until=until)
            assert renewed.valid_until == until and renewed.state == "active"
            with pytest.raises(ValueError, match="no request"):
                await op.review_certificate(number, "approve", "nothing pending")
            await holder.request_cancellation(number, "product retired")
            cancelled = await op.review_certificate(number, "approve", "注销")
            assert cancelled.state == "cancelled"
            listed = await holder.certificates(listing=cert.listing_id)
            assert [c.state for c in listed] == ["cancelled"]

    asyncio.run(story())
    with pytest.raises(APIError) as refused:
        buyer.quote(provider.certificate(number).listing_id)
    assert (refused.value.status_code, refused.value.code) == (409, "certificate_cancelled")
    for client in (provider, buyer, operator):
        client.close()


def _config(stack: Stack, cli: CliRunner, name: str, key: SM2PrivateKey) -> Path:
    key_file = stack.tmp / f"{name}.pem"
    key_file.write_bytes(key.to_pem())
    config = stack.tmp / f"{name}.toml"
    args: list[str | Path] = ["init", "--config", config, "--exchange-url", stack.url]
    args += ["--key-file", key_file]
    assert invoke(cli, *args).exit_code == 0
    return config


def test_the_cli_shows_and_walks_a_certificate(
    stack: Stack, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rich folds the tables to the terminal's width, which its console read when the
    # CLI was first imported (COLUMNS set now would come too late in a full run)
    monkeypatch.setattr(cli_common.stdout, "width", 250)
    provider, buyer, operator = _participants(stack)
    number = _published(provider, operator)
    assert provider.key is not None and buyer.key is not None
    mine = _config(stack, cli, "holder", provider.key)
    theirs = _config(stack, cli, "receiver", buyer.key)
    ops = _config(stack, cli, "operator", stack.operator)

    def ok(config: Path, *args: str) -> Any:
        out = invoke(cli, "certificate", *args, "--config", config, "--json")
        assert out.exit_code == 0, out
        return json.loads(out.stdout)

    shown = ok(mine, "show", number, "--history")
    assert shown["number"] == number and shown["history"][0]["type"] == "certificate.issued"
    assert shown["rights"]["operation"] == [{"participant": provider.key_id, "share_bps": 10_000}]
    offered = ok(
        mine,
        "transfer",
        number,
        "--right",
        "operation",
        "--share-bps",
        "2500",
        "--to",
        str(buyer.key_id),
    )
    assert offered["state"] == "transfer_offered" and offered["log"]["index"] >= 0
    assert ok(theirs, "accept", number)["state"] == "transfer_accepted"
    approved = ok(ops, "review", number, "--approve", "--reason", "checked")
    assert approved["rights"]["operation"] == [
        {"participant": provider.key_id, "share_bps": 7_500},
        {"participant": buyer.key_id, "share_bps": 2_500},
    ]
    assert ok(mine, "renew", number, "--until", "2099-01-01")["state"] == "renewal_pending"
    renewed = ok(
        ops, "review", number, "--approve", "--reason", "ok", "--valid-until", "2099-01-01"
    )
    assert renewed["valid_until"] == 4_070_908_800_000
    human = invoke(cli, "certificate", "show", number, "--history", "--config", mine)
    assert human.exit_code == 0, human
    for text in (number, "certificate.transfer_approved", "certificate.renewed", "operation"):
        assert text in human.stdout
    listed = ok(mine, "list", "--listing", shown["listing_id"])
    assert [c["number"] for c in listed] == [number]

    nothing = invoke(
        cli, "certificate", "review", number, "--approve", "--reason", "x", "--config", ops
    )
    assert nothing.exit_code == 2 and "no request" in (nothing.message or ""), nothing
    refused = invoke(
        cli, "certificate", "cancel", number, "--reason", "x", "--outright", "--config", mine
    )
    assert refused.exit_code == 1, refused
    assert (refused.message or "").startswith("operator_only: ")
    cancelled = ok(ops, "cancel", number, "--reason", "licence revoked", "--outright")
    assert cancelled["state"] == "cancelled"
    for client in (provider, buyer, operator):
        client.close()
