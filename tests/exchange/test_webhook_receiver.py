"""A real webhook receiver for the tests (no tests of its own): an HTTP server on
127.0.0.1 that records every delivery and answers with the statuses it is told
(200 once the list runs out); it can be started on a port chosen before, so a
test can register its URL while nothing listens there yet."""

from __future__ import annotations

import socket
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clients.sdk import Event, verify_webhook
from ledger.sm2 import SM2PublicKey


@dataclass(frozen=True)
class Delivery:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    answered: int

    def verified(self, log_key: SM2PublicKey) -> Event:
        return verify_webhook(self.method, self.url, self.headers, self.body, log_key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """``with Receiver(port) as r:`` serves until the block ends; ``r.url`` is the hook."""

    def __init__(self, port: int | None = None, statuses: list[int] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.statuses: deque[int] = deque(statuses or [])
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def taken(self) -> list[Delivery]:
        """The deliveries answered 2xx, in the order they came."""
        with self._lock:
            return [d for d in self.deliveries if 200 <= d.answered < 300]

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                    receiver.deliveries.append(
                        Delivery(
                            "POST",
                            f"http://{self.headers['Host']}{self.path}",
                            list(self.headers.items()),
                            body,
                            status,
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
