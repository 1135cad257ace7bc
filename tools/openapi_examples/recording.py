"""What the story records: every HTTP exchange with the real server (an httpx
transport the SDK clients share), filed by example name; and the buyer's webhook
receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

WAIT_S = 60.0


@dataclass(frozen=True)
class Exchanged:
    """One HTTP request and its answer, as the wire carried them."""

    method: str
    path: str
    request: Any
    status: int
    headers: httpx.Headers
    response: Any


class Recorder(httpx.BaseTransport):
    """An httpx transport to the real server that keeps every request and answer,
    and files the ones a story step names as examples."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.exchanged: list[Exchanged] = []
        self.requests: dict[str, Any] = {}
        self.responses: dict[str, Any] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = None
        if request.headers.get("content-type", "").startswith("application/json"):
            sent = json.loads(request.read())
        response = self._inner.handle_request(request)
        answer = None
        if response.headers.get("content-type", "").startswith("application/json"):
            answer = json.loads(response.read())
        with self._lock:
            self.exchanged.append(
                Exchanged(
                    request.method,
                    request.url.path,
                    sent,
                    response.status_code,
                    response.headers,
                    answer,
                )
            )
        return response

    def close(self) -> None:
        """Nothing: several clients share this transport; :meth:`shut` closes it."""

    def shut(self) -> None:
        self._inner.close()

    @contextmanager
    def step(
        self, name: str, method: str, path: str, *, request: bool = True, status: int = 0
    ) -> Iterator[list[Exchanged]]:
        """File the last ``method path`` exchange made inside the block as example
        ``name`` (its JSON request body too, when ``request`` and there is one);
        the list yielded holds it afterwards. It must have succeeded, or answered
        ``status`` when one is given."""
        start = len(self.exchanged)
        found: list[Exchanged] = []
        yield found
        matching = [e for e in self.exchanged[start:] if (e.method, e.path) == (method, path)]
        if not matching:
            raise RuntimeError(f"story step {name}: no {method} {path} was made")
        last = matching[-1]
        if last.status >= 400 and last.status != status:
            raise RuntimeError(f"story step {name}: {method} {path} answered {last.status}")
        if request and last.request is not None:
            self.requests[name] = last.request
        if last.response is not None:
            self.responses[name] = last.response
        found.append(last)


class Receiver:
    """The buyer's webhook endpoint on 127.0.0.1: down (503) for its first delivery,
    then taking every event, so the attempts show a retry."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 503 if not receiver.tried else 204
                receiver.tried = True
                if status == 204:
                    receiver.delivered.append(str(body["id"]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.tried = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/shancheng/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def wait_for(what: str, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + WAIT_S
    while (value := check()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the story waited {WAIT_S:.0f} s for {what}")
        time.sleep(0.1)
    return value
