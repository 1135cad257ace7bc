"""The browser's verifier in a real browser: Chromium loads sm-crypto's UMD bundles
and ``web/src/verify.js`` as a module, exactly as a page does, and runs the golden
vectors (docs/vectors/bundle-v1.json): every bundle case stops at its expected step,
every SM3 digest and SM2 signature case agrees.

The files are served from the repository by a static server on 127.0.0.1; the
chain is each case's recorded JSON-RPC answers (a ``fetch`` passed to
``verifyBundle``). Requests to anywhere else are aborted and counted.

Skipped, with the reason, when Playwright or Debian's Chromium
(``/usr/bin/chromium``; ``.ci/run`` installs it) is missing.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
VECTORS = json.loads((ROOT / "docs" / "vectors" / "bundle-v1.json").read_text(encoding="utf-8"))

PAGE = """<!doctype html><meta charset="utf-8"><title>verify.js vectors</title>
<script src="/web/node_modules/sm-crypto/dist/sm2.js"></script>
<script src="/web/node_modules/sm-crypto/dist/sm3.js"></script>
<script type="module">
import * as v from "/web/src/verify.js";
const vectors = await (await fetch("/docs/vectors/bundle-v1.json")).json();
const recorded = (answers) => async (url, init) => {
  const request = JSON.parse(init.body);
  const match = answers.find((a) => a.method === request.method
    && v.canonicalize(a.params) === v.canonicalize(request.params));
  const body = match ? { jsonrpc: "2.0", id: request.id, result: match.result }
    : { jsonrpc: "2.0", id: request.id, error: { code: -32601, message: "not recorded" } };
  return new Response(JSON.stringify(body));
};
const bundles = [];
for (const c of vectors.bundles) {
  const r = await v.verifyBundle(c.bundle_text ?? c.bundle, {
    rpcUrl: "http://chain.invalid/rpc",
    registryAddress: c.options.registry_address,
    minConfirmations: c.options.min_confirmations,
    trustedLogKey: c.options.trusted_log_key,
    fetch: recorded(c.rpc),
  });
  bundles.push({ desc: c.desc, verdict: r.verdict, failedStep: r.failedStep,
                 inconclusive: r.inconclusive });
}
const digests = vectors.sm3.map((c) => v.sm3Hex(v.hexToBytes(c.input_hex)));
const signatures = vectors.sm2.map((c) => {
  const message = v.hexToBytes(c.message_hex);
  return [
    v.verifySm2(c.public_key_pem, message, v.hexToBytes(c.signature_der_hex), c.id),
    v.verifySm2(c.public_key_pem, message, v.hexToBytes(c.signature_raw_hex), c.id, "raw"),
  ];
});
window.results = { bundles, digests, signatures,
  globals: typeof globalThis.sm2 === "object" && typeof globalThis.sm3 === "function" };
</script>"""


BARE_PAGE = """<!doctype html><meta charset="utf-8"><title>without sm-crypto</title>
<script type="module">
import { verifyBundle } from "/web/src/verify.js";
try {
  await verifyBundle("{}", {});
  window.outcome = "no error";
} catch (exc) {
  window.outcome = exc.message;
}
</script>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(ROOT))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="static-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_vectors_in_chromium(static_url: str) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra)"
    )
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium)")
    outside: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

            def route(request_route: Any) -> None:
                url = request_route.request.url
                if url.startswith(static_url + "/"):
                    request_route.continue_()
                else:
                    outside.append(url)
                    request_route.abort()

            page.route("**/*", route)
            page.route(
                f"{static_url}/vectors.html",
                lambda r: r.fulfill(body=PAGE, content_type="text/html; charset=utf-8"),
            )
            page.goto(f"{static_url}/vectors.html")
            page.wait_for_function("window.results !== undefined", timeout=120_000)
            results = page.evaluate("window.results")
            # A page that forgot sm-crypto's scripts gets an error naming them, not a verdict.
            page.route(
                f"{static_url}/bare.html",
                lambda r: r.fulfill(body=BARE_PAGE, content_type="text/html; charset=utf-8"),
            )
            page.goto(f"{static_url}/bare.html")
            page.wait_for_function("window.outcome !== undefined", timeout=60_000)
            outcome = page.evaluate("window.outcome")
        finally:
            browser.close()
    assert errors == [] and outside == []
    assert "sm-crypto" in outcome and "sm2.js" in outcome
    assert results["globals"], "sm-crypto's UMD bundles define the globals sm2 and sm3"
    got = [
        (b["desc"], b["verdict"], b["failedStep"], b["inconclusive"]) for b in results["bundles"]
    ]
    want = [
        (
            c["desc"],
            c["expect"]["verdict"],
            c["expect"]["failed_step"],
            c["expect"]["inconclusive"],
        )
        for c in VECTORS["bundles"]
    ]
    assert got == want
    assert results["digests"] == [c["digest"] for c in VECTORS["sm3"]]
    assert results["signatures"] == [[c["valid"], c["valid"]] for c in VECTORS["sm2"]]
