"""An open SSE stream does not keep the server from stopping: uvicorn in its own
process (its signal handlers installed, as ``shancheng serve`` runs it) with a
stream open exits on SIGTERM, and the stream ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from test_webhook_receiver import free_port

from clients.signing import SM2RequestSigner
from ledger.sm2 import SM2PrivateKey

SERVER = textwrap.dedent(
    """
    import sys

    import uvicorn

    from exchange.app import create_app
    from exchange.settings import Settings

    data_dir, operator_pem, port = sys.argv[1:]
    settings = Settings(
        data_dir=data_dir,
        sequencer_enabled=False,
        operator_public_keys=[open(operator_pem).read()],
        events_poll_s=0.05,
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=int(port), log_level="info")
    """
)


def test_sigterm_ends_open_streams_and_the_server(tmp_path: Path) -> None:
    operator = SM2PrivateKey.generate()
    pem = tmp_path / "operator.pem"
    pem.write_bytes(operator.public_key().to_pem())
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data"), str(pem), str(port)],
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with (
            httpx.Client(base_url=url, auth=SM2RequestSigner(operator)) as client,
            client.stream(
                "GET", "/events", headers={"Accept": "text/event-stream"}, timeout=60
            ) as response,
        ):
            assert response.status_code == 200
            process.send_signal(signal.SIGTERM)
            lines = list(response.iter_lines())  # returns once the server ends the stream
        assert all(line == "" or line.startswith(":") for line in lines)
        _, log = process.communicate(timeout=60)
        # uvicorn re-raises SIGTERM once it has shut down gracefully
        assert process.returncode in (0, -signal.SIGTERM)
        assert "Waiting for application shutdown." in log, log
        assert "Finished server process" in log, log
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
