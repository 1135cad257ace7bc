"""The anchoring worker built from :class:`~exchange.settings.Settings`, with its lock.

``AnchoringService.start_in_app`` is what the API process calls in its lifespan;
``shancheng anchor-worker`` takes the lock its own way (it may wait for it) and
runs the same service in the foreground. Both get it from
:meth:`AnchoringService.for_lock_holder`.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from contracts.chain import DEVNET_TEST_ACCOUNTS, ChainClient
from exchange.anchoring.lock import WorkerLock, worker_lock
from exchange.anchoring.worker import AnchorWorker, StepHook
from exchange.settings import Settings

log = logging.getLogger("shancheng.anchoring")


class AnchoringConfigError(ValueError):
    """The settings do not name a chain and a registry to anchor to."""


def anchor_key(settings: Settings) -> str:
    """The configured anchorer key, else the devnet's first TEST key.

    The chain adapter refuses the test key on any chain but the devnet (31337)
    before it signs anything, so off the devnet a configured key is required.
    """
    if settings.anchor_key is not None:
        return settings.anchor_key.get_secret_value()
    return DEVNET_TEST_ACCOUNTS[0].private_key


def build_worker(
    settings: Settings, engine: Engine, *, on_step: StepHook | None = None
) -> AnchorWorker:
    """An :class:`AnchorWorker` configured from ``settings`` (no network access here)."""
    if not settings.rpc_url or not settings.registry_address:
        raise AnchoringConfigError(
            "anchoring needs a chain: set SHANCHENG_RPC_URL and SHANCHENG_REGISTRY_ADDRESS"
        )
    chain = ChainClient(settings.rpc_url, anchor_key(settings))
    return AnchorWorker(
        engine,
        chain,
        settings.registry_address,
        interval_s=settings.anchor_interval_s,
        size_threshold=settings.anchor_size_threshold,
        confirmations=settings.anchor_confirmations,
        poll_s=settings.anchor_poll_s,
        on_step=on_step,
    )


class AnchoringService:
    """The anchoring worker together with the single-worker lock it holds."""

    def __init__(self, worker: AnchorWorker, lock: WorkerLock) -> None:
        self.worker = worker
        self.lock = lock

    @classmethod
    def for_lock_holder(
        cls, settings: Settings, engine: Engine, lock: WorkerLock
    ) -> AnchoringService:
        """The worker for ``settings``, run by the holder of ``lock`` (the caller took
        it) on a database at head. If building the worker fails, the lock is
        released. No network access here."""
        try:
            worker = build_worker(settings, engine)
        except BaseException:
            lock.release()
            raise
        return cls(worker, lock)

    def start(self) -> None:
        """Run the worker in a thread of this process until :meth:`stop`, or until the
        lock is lost."""
        self.worker.start(guard=self.lock.ensure_held)

    def run_forever(self) -> None:
        """Run the worker in this thread until ``worker.stop()``, or until the lock is
        lost (the caller releases the lock)."""
        self.worker.run_forever(guard=self.lock.ensure_held)

    @classmethod
    def start_in_app(cls, settings: Settings, engine: Engine) -> AnchoringService | None:
        """Start the worker in a thread of this process, unless it is not wanted here.

        ``None`` when anchoring is disabled, no chain is configured, or another
        worker (another API process, ``shancheng anchor-worker``) holds the lock.
        """
        if not settings.anchor_worker_enabled:
            return None
        if not settings.rpc_url or not settings.registry_address:
            log.info("no chain configured (rpc_url, registry_address): anchoring is off")
            return None
        lock = worker_lock(engine)
        if not lock.acquire():
            log.warning(
                "another anchoring worker holds the %s: this process runs without its own",
                lock.description,
            )
            return None
        service = cls.for_lock_holder(settings, engine, lock)
        service.start()
        log.info("anchoring worker started (%s)", lock.description)
        return service

    def stop(self) -> None:
        try:
            self.worker.stop()
        finally:
            self.lock.release()
