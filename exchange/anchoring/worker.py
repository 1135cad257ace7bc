"""The anchoring worker: puts the log's latest checkpoint into the AnchorRegistry.

One pass (:meth:`AnchorWorker.run_once`) first reconciles every open row with the
chain, then anchors the latest checkpoint if the policy says it is due.

Crash safety rests on one ordering: the transaction is signed and the row (state
``sent``, hash, raw bytes, nonce) is COMMITTED BEFORE it is broadcast. Whatever
instant the process dies at, the next pass finds the row and asks the chain:

* ``pending`` row (nothing signed): re-target it to the latest checkpoint, sign, send.
* ``sent`` row: a receipt → ``anchored``. No receipt and the node holds the
  transaction → wait. Unknown to the node → if the registry already stores our
  root for that size, adopt its ``Anchored`` event (``anchored``); if it stores
  another root → ``conflict``; if a larger anchor of ours covers it →
  ``superseded``; otherwise re-broadcast the SAME raw transaction (same nonce and
  hash: it cannot land twice) and, if the node refuses it (its nonce was used by
  another transaction), sign again with the account's next nonce.
* ``anchored`` row: its receipt is gone or moved (a reorg) → back to ``sent`` and
  handled as above (the same raw transaction is re-broadcast); still there with
  ``confirmations`` blocks → ``final``.

Double anchoring is impossible twice over: a re-signed transaction reuses the
nonce of one the node does not hold, and the registry refuses a tree size that
does not grow (``TreeSizeNotIncreasing``, treated as success when the registry
already holds our root for it). At most one transaction is unmined at a time.

A chain that cannot be reached is not an error of the exchange: the pass
reports ``chain_available=False``, keeps every row, and the loop backs off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sqlalchemy import Engine

from contracts.chain import Anchor, ChainClient, SignedTx, TxReceipt
from contracts.errors import (
    ChainError,
    ChainUnavailableError,
    TransactionFailedError,
    TransactionTimeoutError,
    TreeSizeNotIncreasingError,
)
from exchange.anchoring.models import UNMINED_STATES, AnchorRow, AnchorState
from exchange.anchoring.policy import AnchorPolicy, decide
from exchange.anchoring.store import AnchorStore, wall_clock_ms

log = logging.getLogger("shancheng.anchoring")

StepHook = Callable[[str, int], None]
"""Called as ``hook(step, tree_size)`` after ``"sent"`` (row committed, not yet
broadcast) and after ``"broadcast"``: observability, and crash tests."""


class AnchoringHalted(Exception):
    """The worker refuses to anchor until an operator looks (wrong registry, conflict)."""


_REPORTED = (
    "created", "signed", "broadcast", "waiting", "anchored",
    "finalized", "reorged", "superseded", "conflicts",
)  # fmt: skip


@dataclass(frozen=True)
class WorkerReport:
    """What one pass did; tuples hold tree sizes."""

    chain_available: bool = True
    error: str | None = None
    decision: str = ""
    created: tuple[int, ...] = ()
    signed: tuple[int, ...] = ()
    broadcast: tuple[int, ...] = ()
    waiting: tuple[int, ...] = ()
    anchored: tuple[int, ...] = ()
    finalized: tuple[int, ...] = ()
    reorged: tuple[int, ...] = ()
    superseded: tuple[int, ...] = ()
    conflicts: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """The chain answered, nothing failed and no history conflict was found."""
        return self.chain_available and self.error is None and not self.conflicts

    def summary(self) -> str:
        parts = [f"{name} {list(sizes)}" for name in _REPORTED if (sizes := getattr(self, name))]
        if not self.chain_available:
            parts.insert(0, "chain unavailable")
        if self.error:
            parts.append(f"error: {self.error}")
        if self.decision:
            parts.append(self.decision)
        return "; ".join(parts) or "nothing to do"


@dataclass
class _Report:
    chain_available: bool = True
    error: str | None = None
    decision: str = ""
    sizes: dict[str, list[int]] = field(default_factory=dict)

    def add(self, name: str, tree_size: int) -> None:
        self.sizes.setdefault(name, []).append(tree_size)

    def freeze(self) -> WorkerReport:
        lists = {name: tuple(sizes) for name, sizes in self.sizes.items()}
        return WorkerReport(self.chain_available, self.error, self.decision, **lists)


class _OnChain(Enum):
    OURS = "ours"
    CONFLICT = "conflict"
    SUPERSEDED = "superseded"
    FREE = "free"


@dataclass(frozen=True)
class _Lookup:
    outcome: _OnChain
    detail: str = ""


class AnchorWorker:
    """Anchors checkpoints of ``engine``'s log to the registry at ``registry_address``.

    ``chain`` must carry the anchorer's signing key. Only one worker may run per
    database: see :mod:`exchange.anchoring.lock`.
    """

    def __init__(
        self,
        engine: Engine,
        chain: ChainClient,
        registry_address: str,
        *,
        interval_s: float = 60.0,
        size_threshold: int = 1000,
        confirmations: int = 6,
        poll_s: float = 2.0,
        receipt_wait_s: float = 5.0,
        max_backoff_s: float = 60.0,
        clock_ms: Callable[[], int] = wall_clock_ms,
        on_step: StepHook | None = None,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be >= 1 (1 = final once mined)")
        self.chain = chain
        self.registry = chain.registry(registry_address)
        self.policy = AnchorPolicy(interval_s=interval_s, size_threshold=size_threshold)
        self.confirmations = confirmations
        self.poll_s = poll_s
        self.receipt_wait_s = receipt_wait_s
        self.max_backoff_s = max_backoff_s
        self.clock_ms = clock_ms
        self.store = AnchorStore(engine, clock_ms)
        self._on_step = on_step
        self._registry_checked = False
        self._pass_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass --------------------------------------------------------------------------

    def run_once(self) -> WorkerReport:
        """Reconcile open rows with the chain, then anchor if due. Never raises chain errors."""
        with self._pass_lock:
            report = _Report()
            try:
                self._check_setup()
                for row in self.store.open_rows():
                    self._reconcile(row, report)
                self._anchor_if_due(report)
            except ChainUnavailableError as exc:
                report.chain_available = False
                report.error = str(exc)
                log.warning("anchoring paused, will retry: %s", exc)
            except (ChainError, AnchoringHalted) as exc:
                report.error = f"{type(exc).__name__}: {exc}"
                log.error("anchoring: %s", report.error)
            return report.freeze()

    def _check_setup(self) -> None:
        chain_id = self.chain.chain_id()
        address = self.registry.address
        if not self._registry_checked:
            if not self.registry.code_matches_artifact():
                raise AnchoringHalted(
                    f"no AnchorRegistry of the committed artifact at {address} on chain {chain_id}"
                )
            self._registry_checked = True
        foreign = self.store.foreign_rows(chain_id, address)
        if foreign:
            raise AnchoringHalted(
                f"the anchor table holds {foreign} row(s) of another chain or registry than "
                f"{address} on chain {chain_id}; refusing to mix histories"
            )

    def _reconcile(self, row: AnchorRow, report: _Report) -> None:
        if row.state == AnchorState.PENDING:
            self._send(row, report)
        elif row.state == AnchorState.SENT:
            self._reconcile_sent(row, report)
        elif row.state == AnchorState.ANCHORED:
            self._reconcile_anchored(row, report)

    def _anchor_if_due(self, report: _Report) -> None:
        conflicts = self.store.in_state(AnchorState.CONFLICT)
        if conflicts:
            first = conflicts[0]
            raise AnchoringHalted(
                f"history conflict at tree size {first.tree_size}: {first.detail}; "
                "anchoring halted until an operator resolves it"
            )
        in_flight = [r for r in self.store.open_rows() if r.state in UNMINED_STATES]
        if in_flight:
            report.decision = f"anchor of tree size {in_flight[0].tree_size} still in flight"
            return
        latest, last = self.store.latest_checkpoint(), self.store.last()
        decision = decide(
            self.policy,
            latest_size=None if latest is None else latest[0],
            last_anchored_size=None if last is None else last.tree_size,
            last_anchored_at_ms=None if last is None else last.created_at,
            now_ms=self.clock_ms(),
        )
        report.decision = decision.reason
        if not decision.due or latest is None:
            return
        row = self.store.insert_pending(
            latest[0], latest[1], self.chain.chain_id(), self.registry.address
        )
        report.add("created", row.tree_size)
        log.info("anchoring checkpoint %d (%s)", row.tree_size, decision.reason)
        self._send(row, report)

    # -- pending: sign, commit, broadcast --------------------------------------------------

    def _send(self, row: AnchorRow, report: _Report) -> None:
        latest, last = self.store.latest_checkpoint(), self.store.last()
        if latest is not None and last is not None and last.tree_size == row.tree_size < latest[0]:
            # Nothing was signed for it yet: anchor the newest checkpoint instead.
            row = self.store.retarget(row, *latest)
        sent_block = self.chain.block_number()
        try:
            signed = self.registry.sign_anchor(row.tree_size, row.root)
        except TreeSizeNotIncreasingError as exc:
            self._settle(row, self._look_up(row), report, cause=str(exc))
            return
        row = self.store.update(
            row.tree_size,
            state=AnchorState.SENT,
            tx_hash=signed.tx_hash,
            raw_tx=bytes.fromhex(signed.raw.removeprefix("0x")),
            nonce=signed.nonce,
            sender=signed.sender,
            sent_block=sent_block,
            detail=None,
        )
        report.add("signed", row.tree_size)
        self._step("sent", row.tree_size)
        self._broadcast(row, signed, report)

    def _broadcast(self, row: AnchorRow, signed: SignedTx, report: _Report) -> None:
        try:
            self.chain.broadcast(signed)
        except TransactionFailedError as exc:
            # The node refused it, so it is in no pool: safe to sign a new one later.
            self.store.update(row.tree_size, **_unsent(f"broadcast refused: {exc}"))
            raise
        report.add("broadcast", row.tree_size)
        self._step("broadcast", row.tree_size)
        try:
            receipt = self.chain.wait_receipt(signed.tx_hash, timeout=self.receipt_wait_s)
        except TransactionTimeoutError:
            report.add("waiting", row.tree_size)
            return
        self._on_receipt(row, receipt, report)

    # -- sent: find out what became of the transaction -------------------------------------

    def _reconcile_sent(self, row: AnchorRow, report: _Report) -> None:
        assert row.tx_hash is not None
        receipt = self.chain.get_receipt(row.tx_hash)
        if receipt is not None:
            self._on_receipt(row, receipt, report)
            return
        if self.chain.transaction_status(row.tx_hash).state == "pending":
            report.add("waiting", row.tree_size)
            return
        lookup = self._look_up(row)
        if lookup.outcome is not _OnChain.FREE:
            self._settle(row, lookup, report, cause="transaction unknown to the node")
            return
        if row.raw_tx is None:
            self._send(self.store.update(row.tree_size, **_unsent("no raw transaction")), report)
            return
        signed = SignedTx(row.tx_hash, "0x" + row.raw_tx.hex(), row.nonce or 0, row.sender or "")
        log.info("anchor %d: re-broadcasting %s", row.tree_size, row.tx_hash)
        try:
            self._broadcast(row, signed, report)
        except TransactionFailedError as exc:
            log.warning("anchor %d: %s; signing again with a fresh nonce", row.tree_size, exc)
            pending = self.store.get(row.tree_size)
            assert pending is not None
            self._send(pending, report)

    def _on_receipt(self, row: AnchorRow, receipt: TxReceipt, report: _Report) -> None:
        if receipt.succeeded:
            self._mark_anchored(row, receipt, report)
        else:
            cause = f"transaction {receipt.tx_hash} reverted in block {receipt.block_number}"
            self._settle(row, self._look_up(row), report, cause=cause)

    # -- anchored: confirmations, reorgs ---------------------------------------------------

    def _reconcile_anchored(self, row: AnchorRow, report: _Report) -> None:
        assert row.tx_hash is not None
        receipt = self.chain.get_receipt(row.tx_hash)
        if receipt is not None and receipt.succeeded:
            if (receipt.block_number, receipt.block_hash) != (row.block_number, row.block_hash):
                log.warning(
                    "anchor %d: a reorg moved %s to block %d",
                    row.tree_size, row.tx_hash, receipt.block_number,
                )  # fmt: skip
                report.add("reorged", row.tree_size)
                row = self.store.update(
                    row.tree_size,
                    block_number=receipt.block_number,
                    block_hash=receipt.block_hash,
                    detail=f"moved by a reorg from block {row.block_number} {row.block_hash}",
                )
            self._check_final(row, report)
            return
        detail = f"dropped by a reorg from block {row.block_number} {row.block_hash}"
        log.warning("anchor %d: transaction %s %s", row.tree_size, row.tx_hash, detail)
        report.add("reorged", row.tree_size)
        if row.raw_tx is None:
            self._send(self.store.update(row.tree_size, **_unsent(detail)), report)
            return
        row = self.store.update(
            row.tree_size,
            state=AnchorState.SENT,
            block_number=None,
            block_hash=None,
            gas_used=None,
            detail=detail,
        )
        if receipt is not None:
            self._on_receipt(row, receipt, report)
        else:
            self._reconcile_sent(row, report)

    def _mark_anchored(self, row: AnchorRow, receipt: TxReceipt, report: _Report) -> None:
        row = self.store.update(
            row.tree_size,
            state=AnchorState.ANCHORED,
            block_number=receipt.block_number,
            block_hash=receipt.block_hash,
            gas_used=receipt.gas_used,
        )
        report.add("anchored", row.tree_size)
        log.info("anchor %d mined in block %d", row.tree_size, receipt.block_number)
        self._check_final(row, report)

    def _check_final(self, row: AnchorRow, report: _Report) -> None:
        assert row.block_number is not None
        if self.chain.block_number() - row.block_number + 1 >= self.confirmations:
            self.store.update(row.tree_size, state=AnchorState.FINAL)
            report.add("finalized", row.tree_size)

    # -- what does the registry hold for this size? ----------------------------------------

    def _look_up(self, row: AnchorRow) -> _Lookup:
        held = self.registry.anchor_of(row.tree_size)
        if held is not None:
            if held.root == row.root:
                return _Lookup(_OnChain.OURS)
            return _Lookup(
                _OnChain.CONFLICT,
                f"the registry holds root {held.root.hex()} for tree size {row.tree_size}, "
                f"the log's checkpoint has {row.root.hex()}",
            )
        latest = self.registry.latest()
        if latest is None or latest.tree_size < row.tree_size:
            return _Lookup(_OnChain.FREE)
        ours = self.store.checkpoint_root(latest.tree_size)
        if ours == latest.root:
            return _Lookup(
                _OnChain.SUPERSEDED, f"covered by the anchor of tree size {latest.tree_size}"
            )
        return _Lookup(
            _OnChain.CONFLICT,
            f"the registry's latest anchor (tree size {latest.tree_size}, root "
            f"{latest.root.hex()}) is not a checkpoint of this log",
        )

    def _settle(self, row: AnchorRow, lookup: _Lookup, report: _Report, *, cause: str) -> None:
        if lookup.outcome is _OnChain.OURS:
            self._adopt(row, report)
        elif lookup.outcome is _OnChain.CONFLICT:
            log.error("HISTORY CONFLICT at tree size %d: %s", row.tree_size, lookup.detail)
            self.store.update(row.tree_size, state=AnchorState.CONFLICT, detail=lookup.detail)
            report.add("conflicts", row.tree_size)
        elif lookup.outcome is _OnChain.SUPERSEDED:
            log.warning("anchor %d superseded: %s", row.tree_size, lookup.detail)
            self.store.update(row.tree_size, state=AnchorState.SUPERSEDED, detail=lookup.detail)
            report.add("superseded", row.tree_size)
        else:  # the size is still free: sign again on the next pass
            log.warning("anchor %d back to pending: %s", row.tree_size, cause)
            self.store.update(row.tree_size, **_unsent(cause))

    def _adopt(self, row: AnchorRow, report: _Report) -> None:
        """The registry holds our root: record the transaction that put it there."""
        event = self.registry.find_anchor_event(row.tree_size, from_block=row.sent_block or 0)
        if event is None and row.sent_block:
            event = self.registry.find_anchor_event(row.tree_size)
        if event is None or event.tx_hash is None or event.root != row.root:
            raise ChainError(
                f"the registry holds our root for tree size {row.tree_size} "
                "but no matching Anchored event was found"
            )
        receipt = self.chain.get_receipt(event.tx_hash)
        if receipt is None:  # the log and the receipt disagree for a moment (reorg)
            receipt = _receipt_of(event)
        if event.tx_hash != row.tx_hash:
            row = self.store.update(
                row.tree_size,
                tx_hash=event.tx_hash,
                raw_tx=None,
                nonce=None,
                detail=f"anchored by {event.tx_hash}, not by the transaction this row signed",
            )
        self._mark_anchored(row, receipt, report)

    def _step(self, step: str, tree_size: int) -> None:
        if self._on_step is not None:
            self._on_step(step, tree_size)

    # -- loop ------------------------------------------------------------------------------

    def run_forever(self, guard: Callable[[], None] | None = None) -> None:
        """Run passes until :meth:`stop`; back off (doubling, capped) while passes fail.

        ``guard`` is called before each pass (e.g. to check the single-worker lock is
        still held); if it raises, the loop ends.
        """
        delay = self.poll_s
        while not self._stop.is_set():
            if guard is not None:
                try:
                    guard()
                except Exception:
                    log.exception("anchoring worker stops")
                    return
            try:
                ok = self.run_once().ok
            except Exception:  # a database hiccup must not kill the worker
                log.exception("anchoring pass failed")
                ok = False
            delay = self.poll_s if ok else min(max(delay * 2, self.poll_s), self.max_backoff_s)
            self._stop.wait(delay)

    def start(self, guard: Callable[[], None] | None = None) -> None:
        """Run :meth:`run_forever` in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("anchoring worker already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_forever, args=(guard,), name="anchor-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop and wait for the current pass to finish."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _unsent(detail: str) -> dict[str, object]:
    """Fields that put a row back to ``pending`` with no transaction."""
    return {
        "state": AnchorState.PENDING,
        "tx_hash": None,
        "raw_tx": None,
        "nonce": None,
        "sender": None,
        "block_number": None,
        "block_hash": None,
        "gas_used": None,
        "detail": detail,
    }


def _receipt_of(event: Anchor) -> TxReceipt:
    assert event.tx_hash and event.block_number is not None and event.block_hash
    return TxReceipt(event.tx_hash, event.block_number, event.block_hash, 0, 0, 1)
