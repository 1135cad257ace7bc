"""Quality reports end to end (docs/quality.md) on real uvicorn + SQLite with the
provider agent as its own process: the provider computes and publishes its report
with ``shancheng provider quality``; an approved assessor runs ``shancheng assessor
assess`` (a zero-price assessment order, delivered by the agent, received and
checked, recomputed) and countersigns it. A provider report whose counts were
flattered is recomputed by the assessor through the async SDK and disputed with its
own signed report; the listing shows who signed and who disputed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_e2e_agent import REPO, Story, running_story

from clients.quality import compute_report
from clients.sdk import AsyncExchangeClient
from ledger.protocol.quality import Indicator, TableSchema
from ledger.sm2 import SM2PrivateKey

SCHEMA = {
    "fields": [
        {"name": "hour", "type": "integer", "constraints": {"required": True, "unique": True}},
        {"name": "station", "type": "string", "constraints": {"pattern": "站-[0-6]"}},
        {"name": "reading", "type": "number", "constraints": {"minimum": 0, "maximum": 40}},
    ],
    "primaryKey": ["hour"],
}
AS_OF = 1_767_225_600_000


def cli(story: Story, key: SM2PrivateKey, *args: str) -> dict[str, Any]:
    key_file = story.tmp / f"{key.key_id()[:12]}.pem"
    key_file.write_bytes(key.to_pem())
    command = [sys.executable, "-m", "exchange.cli", *args]
    command += ["--exchange-url", story.url, "--key-file", str(key_file), "--json"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def story(live_server: Any, tmp_path: Path) -> Any:
    with running_story(live_server, tmp_path) as running:
        yield running


def test_provider_reports_assessor_countersigns_or_disputes(story: Story, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA), encoding="utf-8")
    honest = story.listing({"model": "fixed", "price": 9_900})
    flattered = story.listing({"model": "fixed", "price": 9_900})
    story.start_agent(tmp_path / "state", honest, flattered)

    published = cli(
        story,
        story.provider_key,
        "provider",
        "quality",
        honest,
        str(story.data),
        "--schema",
        str(schema_file),
        "--as-of",
        str(AS_OF),
    )
    expected = compute_report(
        story.data, TableSchema.from_dict(SCHEMA), update_frequency="once", as_of=AS_OF
    )
    assert published["report_sm3"] == expected.digest()
    # readings above 40 (hours 81 to 99) fail their maximum: not an A in accuracy
    assert published["indicators"]["accuracy"] < 10_000

    assessor_key = SM2PrivateKey.generate()
    assessor = story.client(assessor_key)
    assessor.register("重庆数据资产评估中心", "assessor")
    story.operator.approve_participant(assessor_key.key_id())
    assessed = cli(story, assessor_key, "assessor", "assess", honest, "--wait", "90")
    assert assessed["agreed"] is True
    assert assessed["recomputed"]["report_sm3"] == expected.digest()
    order = assessor.order(assessed["order_id"])
    assert (order.amount, order.terms["purpose"]) == (0, "assessment")
    assert assessor.account().available == 0
    quality = story.provider.listing_quality(honest).quality
    assert quality is not None
    assert quality.countersigned_by == (assessor_key.key_id(),)
    assert quality.signed_by == story.provider_key.key_id()
    assert quality.grade == expected.grade

    # a report that claims every reading is within its bounds: self-consistent, signed,
    # accepted; the assessor's recomputation differs and it signs its own
    lie = dataclasses.replace(
        expected, accuracy=Indicator(expected.accuracy.checked, expected.accuracy.checked)
    )
    story.provider.report_quality(flattered, lie)

    async def assess() -> Any:
        async with AsyncExchangeClient(story.url, key=assessor_key) as client:
            return await client.assess(flattered, tmp_path, delivery_wait=90)

    disputed = anyio.run(assess)
    assert disputed.agreed is False
    assert disputed.recomputed.digest() == expected.digest()
    view = story.provider.listing_quality(flattered)
    assert view.quality is not None
    assert view.quality.report_digest == lie.digest()
    assert view.quality.disputed_by == (assessor_key.key_id(),)
    assert view.quality.countersigned_by == ()
    assert {(r.signer_role, r.report_sm3) for r in view.reports} == {
        ("provider", lie.digest()),
        ("assessor", expected.digest()),
    }
