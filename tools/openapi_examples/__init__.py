"""Write ``exchange/api/examples/examples.json``: the OpenAPI examples, recorded from a
real story.

``make examples`` (or ``python -m tools.openapi_examples [target]``) starts a local
exchange in a temporary directory the way ``shancheng run`` does (an anvil devnet,
the ``AnchorRegistry``, ``create_app`` on a migrated SQLite file, a real uvicorn
on 127.0.0.1), then plays a story through the SDK as its participants would and
records each operation's request and response body under its example name:

a provider (with a co-provider holding 30 %) registers, is approved, drafts,
edits, submits and has published a listing of Chongqing bus-stop ridership in
exchange custody and uploads its content; the operator credits the buyer, who
registers a webhook, quotes, orders, receives the envelope, downloads and
accepts (the exchange settles with a 5 % platform fee); a second order is
disputed and refunded; on a second listing, in provider custody and priced by
the row, the buyer orders 10 rows and the provider uploads their ciphertext and
signs its delivery (as its agent would);
another listing is rejected; a version is added; a participant is suspended;
the provider appends notes to the log, revokes the first order's access and
delists the listing; the anchoring worker anchors the log on the devnet, so
receipts, anchors and the ``anchor.final`` event are real too. Only
``get_health_degraded`` needs a second app: the same exchange configured with a
chain that does not answer.

Keys are *documentation keys* (:func:`doc_key`): derived from fixed labels, so
their ids stay the same across runs and their private halves are public by
construction: never configure one as an operator or trust it anywhere. The log
key is the documentation key ``exchange``. Everything else (timestamps, ids,
signatures, hashes, temporary paths) is whatever the run produced, so every
run rewrites it; the example names and the shapes of the bodies stay the same
(``tests/tools/test_openapi_examples.py`` checks that).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from exchange.app import create_app
from exchange.local_exchange import free_port, local_exchange, serve_in_thread
from exchange.settings import Settings
from tools.openapi_examples.keys import doc_key
from tools.openapi_examples.recording import Receiver, Recorder
from tools.openapi_examples.story import Story

__all__ = ["OUTPUT", "main", "record", "write"]

OUTPUT = Path(__file__).parents[2] / "exchange" / "api" / "examples" / "examples.json"
COMMENT = (
    "Recorded from a real story by `make examples` (tools/openapi_examples); do not "
    "edit. Documentation keys only: their private keys are derivable by design."
)

STORY_SETTINGS: dict[str, Any] = {
    "platform_fee_bp": 500,
    "sequencer_interval": 0.2,
    "anchor_interval_s": 1.0,
    "anchor_poll_s": 0.2,
    "anchor_confirmations": 1,
    "webhook_poll_s": 0.2,
    "webhook_backoff_base_s": 0.2,
    "webhook_backoff_cap_s": 1.0,
}
"""How the story's exchange differs from the defaults: a 5 % platform fee (a
three-part split), and fast sequencing, anchoring and webhook retries so the
story does not wait long for receipts and deliveries."""


def degraded_health(work: Path, recorder: Recorder) -> Any:
    """``/health`` of an exchange whose chain does not answer (a port nobody listens on)."""
    settings = Settings(
        data_dir=work,
        rpc_url=f"http://127.0.0.1:{free_port()}",
        registry_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        sequencer_enabled=False,
        anchor_worker_enabled=False,
        webhooks_enabled=False,
    )
    with (
        serve_in_thread(create_app(settings)) as url,
        httpx.Client(transport=recorder) as http,
        recorder.step("get_health_degraded", "GET", "/health", status=503),
    ):
        http.get(f"{url}/health")
    return recorder.responses["get_health_degraded"]


def record() -> dict[str, Any]:
    """Play the story on a fresh local exchange; the examples file's content."""
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="shancheng-examples-") as tmp:
        work = Path(tmp)
        log_key = work / "log-key.pem"
        log_key.write_bytes(doc_key("exchange").to_pem())
        log_key.chmod(0o600)
        with (
            local_exchange(
                work / "exchange",
                operator=doc_key("operator"),
                log_key_file=log_key,
                **STORY_SETTINGS,
            ) as exchange,
            Receiver() as receiver,
        ):
            story = Story(exchange.url, work, recorder)
            try:
                story.run(receiver)
            finally:
                story.close()
        (work / "degraded").mkdir()
        degraded_health(work / "degraded", recorder)
        recorder.shut()
    keys = {key.key_id(): key.public_key().to_pem().decode("ascii") for key in story.keys.values()}
    return {
        "comment": COMMENT,
        "ids": story.ids,
        "keys": keys,
        "requests": dict(sorted(recorder.requests.items())),
        "responses": dict(sorted(recorder.responses.items())),
    }


def write(target: Path) -> None:
    target.write_text(json.dumps(record(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Write the examples file (or the path given)."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else OUTPUT
    write(target)
    print(f"wrote {target}")
    return 0
