"""The provider agent's life: start-up checks, catch-up, following the event feed.

:meth:`Agent.run`:

1. **start-up**: for each ``LISTING_ID=PATH`` the listing must be in provider
   custody and the file's SM3 (and row root) its current version's; the same
   streamed pass writes the version's row index into the state directory. A file
   that differs is refused, in one line, before anything is served.
2. **catch-up**: every order of the agent's listings (``GET /orders?role=provider``,
   paginated) still ``placed`` is delivered (:class:`agent.deliver.Deliverer`);
   every pending computation of its open computation orders is answered
   (:class:`agent.answer.Answerer`).
3. **follow**: ``GET /events`` (SSE) for ``order.placed`` and
   ``computation.requested``, resuming after the last event id kept in the state
   directory; each such order of its listings is delivered, each computation
   answered, then the event id is stored.

A broken connection or an exchange that is down (no answer, 5xx) is retried
with exponential backoff (1 s doubling to 30 s), going through catch-up again:
nothing paid in the meantime is missed. SIGTERM/SIGINT stop the agent cleanly,
after the delivery in progress. Only outbound connections; one log line per step.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Final, TypeVar

from agent.answer import Answerer, EngineCache
from agent.compute import ComputeLimits
from agent.deliver import Dataset, Deliverer, DeliveryRefused, file_fingerprint
from agent.state import AgentState
from clients.datasets import DatasetError, describe_file
from clients.sdk import APIError, ClientError, Computation, ExchangeClient, Order, TransportError

__all__ = ["Agent", "AgentError", "print_line"]

T = TypeVar("T")

ORDER_PLACED: Final = "order.placed"
COMPUTATION_REQUESTED: Final = "computation.requested"
OPEN_ORDER_STATES: Final = frozenset({"placed", "delivered"})
_PAGE: Final = 100
_BACKOFF_START: Final = 1.0
_BACKOFF_MAX: Final = 30.0
_DESCRIBED_FORMATS: Final = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "parquet": "parquet"}


class AgentError(Exception):
    """The agent cannot start (a dataset that is not its listing's, a listing it may
    not serve); the message is one line."""


class _Stop(Exception):
    """A stop signal arrived while the agent was waiting."""


def print_line(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} agent: {message}", flush=True)


def _retryable(exc: ClientError) -> bool:
    return isinstance(exc, TransportError) or (isinstance(exc, APIError) and exc.status_code >= 500)


class Agent:
    """A provider's agent for ``datasets`` (listing id → file), signing with ``client``'s key."""

    def __init__(
        self,
        client: ExchangeClient,
        state_dir: str | Path,
        datasets: Mapping[str, str | Path],
        *,
        log: Callable[[str], None] = print_line,
        reconnect_delay: float = 1.0,
        limits: ComputeLimits | None = None,
    ) -> None:
        self.client = client
        self.state = AgentState(state_dir)
        self.files = {listing: Path(path) for listing, path in datasets.items()}
        self.log = log
        self.reconnect_delay = reconnect_delay
        self._stopping = False
        self._busy = False
        self._backoff = _BACKOFF_START
        self.deliverer: Deliverer | None = None
        self.engines = EngineCache(limits or ComputeLimits())

    # ------------------------------------------------------------------ start-up

    def prepare(self) -> Deliverer:
        """Check every dataset against its listing; the deliverer of the checked ones."""
        key_id = self.client.key_id
        served: dict[str, Dataset] = {}
        for listing_id, path in self.files.items():
            listing = self.client.listing(listing_id)
            if key_id not in listing.provider_keys():
                raise AgentError(f"listing {listing_id}: you are not one of its providers")
            if listing.custody != "provider":
                raise AgentError(
                    f"listing {listing_id} is in {listing.custody} custody: nothing to serve"
                )
            index = self.state.row_index_path(listing_id, listing.version)
            self.log(f"listing {listing_id}: checking {path} against version {listing.version}")
            try:
                fingerprint = file_fingerprint(path)
                described = describe_file(
                    path,
                    format=_DESCRIBED_FORMATS.get(listing.format, "binary"),
                    sample_rows=0,
                    row_index=index,
                )
            except (DatasetError, OSError) as exc:
                raise AgentError(f"listing {listing_id}: cannot read {path}: {exc}") from None
            if file_fingerprint(path) != fingerprint:
                raise AgentError(f"listing {listing_id}: {path} changed while it was being checked")
            if described.sm3 != listing.content_digest:
                raise AgentError(
                    f"listing {listing_id}: refusing to serve {path}: its SM3 {described.sm3} "
                    f"is not version {listing.version}'s {listing.content_digest}"
                )
            if described.row_root != listing.row_root:
                raise AgentError(
                    f"listing {listing_id}: refusing to serve {path}: its row root "
                    f"{described.row_root} is not version {listing.version}'s {listing.row_root}"
                )
            served[listing_id] = Dataset(
                listing_id=listing_id,
                version=listing.version,
                path=path,
                format=listing.format,
                content_digest=listing.content_digest,
                row_count=listing.row_count,
                row_root=listing.row_root,
                row_index=index if index.exists() else None,
                fingerprint=fingerprint,
            )
            self.log(f"listing {listing_id}: serving {path} (version {listing.version})")
        return Deliverer(self.client, self.state, served, self.log)

    # ------------------------------------------------------------------ work

    def _pending(self) -> Iterator[Order]:
        offset: int | None = 0
        while offset is not None:
            page = self.client.sales(limit=_PAGE, offset=offset)
            yield from page.items
            offset = page.next_offset

    def catch_up(self, deliverer: Deliverer, answerer: Answerer) -> int:
        """Deliver every placed order of the agent's listings and answer every pending
        computation of its open computation orders; how many were handled."""
        sales = list(self._pending())
        pending = [order for order in sales if deliverer.serves(order)]
        self.log(f"catch-up: {len(pending)} order(s) awaiting delivery")
        for order in pending:
            self._deliver(deliverer, order)
        asked = [
            computation
            for order in sales
            if order.terms.get("computation")
            and order.state in OPEN_ORDER_STATES
            and order.listing_id in answerer.datasets
            for computation in self._computations(order.id)
            if answerer.serves(computation)
        ]
        self.log(f"catch-up: {len(asked)} computation(s) awaiting an answer")
        for computation in reversed(asked):  # oldest first
            self._answer(answerer, computation)
        return len(pending) + len(asked)

    def _computations(self, order_id: str) -> Iterator[Computation]:
        offset: int | None = 0
        while offset is not None:
            page = self.client.computations(order_id, limit=_PAGE, offset=offset)
            yield from page.items
            offset = page.next_offset

    def follow(self, deliverer: Deliverer, answerer: Answerer) -> None:
        """Deliver orders as they are placed and answer computations as they are asked
        (returns only by an exception)."""
        after = self.state.last_event_id
        self.log(f"following events after {after or 'the start'}")
        events = self.client.iter_events(
            after=after,
            types=[ORDER_PLACED, COMPUTATION_REQUESTED],
            reconnect_delay=self.reconnect_delay,
        )
        for event in events:
            if event.listing_id in deliverer.datasets:
                if event.type == ORDER_PLACED and event.order_id is not None:
                    order = self.client.order(event.order_id)
                    if deliverer.serves(order):
                        self.log(f"event {event.id}: order {order.id} placed")
                        self._deliver(deliverer, order)
                elif event.type == COMPUTATION_REQUESTED and event.record is not None:
                    computation_id = event.record.record.payload.get("computation_id")
                    if isinstance(computation_id, str):
                        computation = self.client.computation(computation_id)
                        if answerer.serves(computation):
                            self.log(f"event {event.id}: computation {computation.id} asked")
                            self._answer(answerer, computation)
            self.state.save_last_event_id(event.id)

    def _deliver(self, deliverer: Deliverer, order: Order) -> None:
        self._busy = True
        try:
            deliverer.deliver(order)
        except DeliveryRefused as exc:
            self.log(f"order {order.id}: not delivered: {exc}")
        except APIError as exc:
            if exc.status_code >= 500:
                raise
            self.log(f"order {order.id}: the exchange refused: {exc}")
        finally:
            self._busy = False
        if self._stopping:
            raise _Stop

    def _answer(self, answerer: Answerer, computation: Computation) -> None:
        self._busy = True
        try:
            answerer.answer(computation)
        except APIError as exc:
            if exc.status_code >= 500:
                raise
            self.log(f"computation {computation.id}: the exchange refused: {exc}")
        finally:
            self._busy = False
        if self._stopping:
            raise _Stop

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Start, catch up, follow, until SIGTERM/SIGINT (exit 0) or a start-up
        failure (exit 1, one line)."""
        with self._signals():
            try:
                self.deliverer = deliverer = self._with_backoff(self.prepare)
                self._with_backoff(lambda: self._serve(deliverer))
            except _Stop:
                self.log("stopped")
                return 0
            except (AgentError, ClientError) as exc:
                self.log(f"error: {exc}")
                return 1
            finally:
                self.engines.close()
        raise AssertionError("the agent serves until it is stopped")  # pragma: no cover

    def _serve(self, deliverer: Deliverer) -> None:
        answerer = Answerer(self.client, self.state, deliverer.datasets, self.engines, self.log)
        self.catch_up(deliverer, answerer)
        self._backoff = _BACKOFF_START  # reachable again: the next outage starts afresh
        self.follow(deliverer, answerer)

    def _with_backoff(self, step: Callable[[], T]) -> T:
        """``step()``, again after a growing pause while the exchange is unreachable."""
        self._backoff = _BACKOFF_START
        while True:
            try:
                return step()
            except ClientError as exc:
                if not _retryable(exc):
                    raise
                self.log(f"exchange unreachable ({exc}); retrying in {self._backoff:.0f} s")
                time.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.log(f"{signal.Signals(signum).name}: stopping")
            self._stopping = True
            if not self._busy:
                raise _Stop

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sys.stdout.flush()
