"""Verifying a receipt bundle, step by step, against the chain.

:func:`verify_bundle` runs five steps in this order; the first failure stops
the audit with an :class:`AuditError` naming the step and its expected and
actual values:

1. ``actor_signature``: the actor's public key is the record's actor (its key
   id equals ``record.actor``) and its SM2 signature over the record holds.
2. ``leaf_hash``: the leaf hash computed from the signed record equals the
   promise's; the promise's batch proof places that leaf at the promise's
   index in its append batch, and the batch statement (with the batch root
   the proof yields) is signed by the log key; the promise's index is the
   inclusion proof's index.
3. ``inclusion``: the inclusion proof is for the checkpoint's tree size and
   leads from the leaf hash to the checkpoint's root.
4. ``checkpoint_signature``: the checkpoint is signed by the log key; with a
   ``trusted_log_key``, the bundle's log key must *be* that key.
5. ``chain_anchor``: the registry named by the bundle holds, on the bundle's
   chain, the checkpoint's root for its tree size, with at least
   ``min_confirmations`` confirmations. Offline (``anchors=None``) the step is
   skipped.

The chain is reached through the :class:`AnchorSource` protocol, so this
module stays pure: ``clients.audit.ChainAnchorSource`` implements it over
JSON-RPC, tests use an in-memory fake.

Expected/actual convention: ``expected`` is what the trusted side says (the
value computed from the signed data, the on-chain root, the trusted key),
``actual`` what the bundle claims.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from ledger.bundle import Bundle
from ledger.checkpoint import KeyMismatchError, PromiseProofError
from ledger.errors import InvalidSignature, LedgerError, VerificationError
from ledger.merkle import (
    HashSizeError,
    IndexOutOfRangeError,
    InvalidProofError,
    ProofError,
    RootMismatchError,
    verify_inclusion,
)
from ledger.records import ActorMismatchError
from ledger.sm2 import SM2PublicKey

__all__ = [
    "STEPS",
    "AnchorLookupError",
    "AnchorSource",
    "AuditError",
    "AuditInconclusiveError",
    "AuditReport",
    "OnChainAnchor",
    "StepResult",
    "StepStatus",
    "WrongChainError",
    "verify_bundle",
]

STEPS: Final = (
    "actor_signature",
    "leaf_hash",
    "inclusion",
    "checkpoint_signature",
    "chain_anchor",
)
"""The steps of :func:`verify_bundle`, in the order they run."""


class StepStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step's outcome. ``expected``/``actual`` are set on failure."""

    name: str
    status: StepStatus
    detail: str
    expected: str | None = None
    actual: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status.value}
        out["detail"] = self.detail
        if self.status is StepStatus.FAILED:
            out["expected"] = self.expected
            out["actual"] = self.actual
        return out


@dataclass(slots=True)
class AuditReport:
    """What an audit found: one :class:`StepResult` per step, in order."""

    steps: list[StepResult] = field(default_factory=list)
    subject: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No step failed (skipped steps are allowed: that is offline mode)."""
        return all(s.status is not StepStatus.FAILED for s in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status is StepStatus.FAILED), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "subject": dict(self.subject),
            "steps": [s.to_dict() for s in self.steps],
        }


class AuditError(VerificationError):
    """An audit step failed. ``step`` names it (one of :data:`STEPS`, or for the
    log walk ``checkpoint``/``consistency``/``entry``); ``report`` holds every
    step run so far when the failure comes from :func:`verify_bundle`."""

    def __init__(
        self,
        step: str,
        message: str,
        expected: object = None,
        actual: object = None,
        *,
        report: Any = None,
    ) -> None:
        self.step = step
        self.message = message
        self.expected = None if expected is None else _show(expected)
        self.actual = None if actual is None else _show(actual)
        self.report = report
        text = f"{step}: {message}"
        if self.expected is not None or self.actual is not None:
            text += f" (expected {self.expected}, actual {self.actual})"
        super().__init__(text)


class AuditInconclusiveError(LedgerError):
    """An audit could not be completed (the chain or the exchange could not be
    read): nothing was found wrong, nothing was proven either. ``report`` holds
    what was checked before, when there is one."""

    def __init__(self, message: str) -> None:
        self.report: Any = None
        super().__init__(message)


class AnchorLookupError(AuditInconclusiveError):
    """An :class:`AnchorSource` could not answer (e.g. the chain is unreachable)."""


class WrongChainError(AnchorLookupError):
    """The anchor source reads another chain than the one asked for.

    Raised by an :class:`AnchorSource`; :func:`verify_bundle` turns it into a
    ``chain_anchor`` failure (the bundle's chain is not the auditor's)."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"asked about chain {expected}, but the endpoint serves chain {actual}")


@dataclass(frozen=True, slots=True)
class OnChainAnchor:
    """What the registry holds for one tree size.

    ``confirmations`` counts the anchoring block itself (1 = just mined).
    """

    root: bytes
    block_number: int
    tx_hash: str | None
    confirmations: int


class AnchorSource(Protocol):
    """Reads anchored roots from a registry on a chain.

    Returns ``None`` when ``tree_size`` is not anchored there (or there is no
    registry at that address). Raises :class:`WrongChainError` when it is
    connected to another chain than ``chain_id``, :class:`AnchorLookupError`
    when it cannot tell.
    """

    def anchored_root(
        self, chain_id: int, registry_address: str, tree_size: int
    ) -> OnChainAnchor | None: ...


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class _Run:
    """Bookkeeping of one audit: records passed/failed steps into the report."""

    def __init__(self, report: AuditReport) -> None:
        self.report = report

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Run a step; the body appends human-readable details to the yielded list."""
        details: list[str] = []
        try:
            yield details
        except AuditError as exc:
            self.report.steps.append(
                StepResult(name, StepStatus.FAILED, exc.message, exc.expected, exc.actual)
            )
            self._skip_rest(name)
            exc.report = self.report
            raise
        except AuditInconclusiveError as exc:
            self.report.steps.append(StepResult(name, StepStatus.FAILED, f"inconclusive: {exc}"))
            self._skip_rest(name)
            exc.report = self.report
            raise
        self.report.steps.append(StepResult(name, StepStatus.PASSED, "; ".join(details)))

    def skip(self, name: str, why: str) -> None:
        self.report.steps.append(StepResult(name, StepStatus.SKIPPED, why))

    def _skip_rest(self, failed: str) -> None:
        for later in STEPS[STEPS.index(failed) + 1 :]:
            self.skip(later, "not run: an earlier step failed")


def _proof_failure(step: str, exc: ProofError) -> AuditError:
    if isinstance(exc, RootMismatchError):
        return AuditError(
            step,
            f"the proof does not lead to the checkpoint's {exc.which}",
            exc.expected,
            exc.calculated,
        )
    if isinstance(exc, InvalidProofError):
        return AuditError(
            step, f"wrong number of {exc.what} nodes", exc.expected_length, exc.actual_length
        )
    if isinstance(exc, IndexOutOfRangeError):
        return AuditError(
            step, "leaf index outside the tree", f"index < {exc.tree_size}", exc.index
        )
    if isinstance(exc, HashSizeError):
        return AuditError(step, f"{exc.what} has the wrong size", exc.expected, exc.actual)
    return AuditError(step, str(exc))


def verify_bundle(
    bundle: Bundle,
    *,
    anchors: AnchorSource | None,
    trusted_log_key: SM2PublicKey | None = None,
    trusted_registry: str | None = None,
    min_confirmations: int = 1,
) -> AuditReport:
    """Audit ``bundle`` (see the module docstring for the steps).

    ``trusted_registry`` is the registry address the auditor trusts (checked
    in ``chain_anchor``, compared case-insensitively): a bundle naming another
    registry fails there.

    Returns the report when every step passed (``chain_anchor`` is skipped
    when ``anchors`` is ``None``). Raises :class:`AuditError` on the first
    failing step, :class:`AnchorLookupError` when the chain cannot be read;
    both carry the report so far in ``.report``.
    """
    if min_confirmations < 1:
        raise ValueError("min_confirmations must be at least 1")
    report = AuditReport(subject=_subject(bundle))
    run = _Run(report)
    record = bundle.record
    leaf = record.leaf_hash()

    with run.step("actor_signature") as notes:
        try:
            record.verify(bundle.actor_public_key)
        except ActorMismatchError as exc:
            raise AuditError(
                "actor_signature",
                "the actor public key is not the record's actor",
                exc.expected,
                exc.actual,
            ) from None
        except InvalidSignature:
            raise AuditError(
                "actor_signature",
                "the actor's SM2 signature over the record does not verify",
                f"a valid signature by {record.record.actor}",
                "an invalid signature",
            ) from None
        notes.append(f"{record.record.type} signed by {record.record.actor}")

    with run.step("leaf_hash") as notes:
        promise = bundle.promise
        if promise.leaf_hash != leaf:
            raise AuditError(
                "leaf_hash",
                "the promise is for another leaf than the record",
                leaf,
                promise.leaf_hash,
            )
        try:
            promise.batch_root()
        except PromiseProofError as exc:
            raise AuditError(
                "leaf_hash",
                f"the promise's batch proof does not place the leaf in its batch: {exc.reason}",
                exc.expected,
                exc.actual,
            ) from None
        _check_signed("leaf_hash", "promise", lambda: promise.verify(bundle.log_public_key))
        if promise.index != bundle.inclusion.index:
            raise AuditError(
                "leaf_hash",
                "the inclusion proof is for another index than the promise",
                promise.index,
                bundle.inclusion.index,
            )
        notes.append(f"leaf {leaf.hex()} promised at index {promise.index}")

    with run.step("inclusion") as notes:
        checkpoint, inclusion = bundle.checkpoint, bundle.inclusion
        if inclusion.tree_size != checkpoint.tree_size:
            raise AuditError(
                "inclusion",
                "the inclusion proof is for another tree size than the checkpoint",
                checkpoint.tree_size,
                inclusion.tree_size,
            )
        try:
            verify_inclusion(
                leaf, inclusion.index, inclusion.tree_size, inclusion.hashes, checkpoint.root
            )
        except ProofError as exc:
            raise _proof_failure("inclusion", exc) from None
        notes.append(f"leaf {inclusion.index} is in the tree of size {checkpoint.tree_size}")

    with run.step("checkpoint_signature") as notes:
        if trusted_log_key is not None and trusted_log_key != bundle.log_public_key:
            raise AuditError(
                "checkpoint_signature",
                "the bundle's log key is not the trusted log key",
                trusted_log_key.key_id(),
                bundle.log_public_key.key_id(),
            )
        _check_signed(
            "checkpoint_signature",
            "checkpoint",
            lambda: checkpoint.verify(bundle.log_public_key),
        )
        trusted = " (the trusted key)" if trusted_log_key is not None else ""
        notes.append(f"signed by log key {checkpoint.log_key_id}{trusted}")

    if anchors is None:
        run.skip("chain_anchor", "offline: the chain was not consulted")
        return report
    with run.step("chain_anchor") as notes:
        notes.append(_check_anchor(bundle, anchors, trusted_registry, min_confirmations))
    return report


def _check_signed(step: str, what: str, verify: Callable[[], None]) -> None:
    try:
        verify()
    except KeyMismatchError as exc:
        raise AuditError(
            step, f"the {what} names another log key", exc.actual, exc.expected
        ) from None
    except InvalidSignature:
        raise AuditError(
            step,
            f"the {what}'s signature by the log key does not verify",
            "a valid signature",
            "an invalid signature",
        ) from None


def _check_anchor(
    bundle: Bundle, anchors: AnchorSource, trusted_registry: str | None, min_confirmations: int
) -> str:
    ref, checkpoint = bundle.anchor, bundle.checkpoint
    where = f"registry {ref.registry_address} on chain {ref.chain_id}"
    if trusted_registry is not None and not ref.same_registry(trusted_registry):
        raise AuditError(
            "chain_anchor",
            "the bundle names another registry than the trusted one",
            trusted_registry,
            ref.registry_address,
        )
    try:
        on_chain = anchors.anchored_root(ref.chain_id, ref.registry_address, checkpoint.tree_size)
    except WrongChainError as exc:
        raise AuditError(
            "chain_anchor",
            "the bundle is for another chain than the RPC endpoint serves",
            exc.actual,
            exc.expected,
        ) from None
    if on_chain is None:
        raise AuditError(
            "chain_anchor",
            f"tree size {checkpoint.tree_size} is not anchored in {where}",
            "an anchored root",
            "none",
        )
    if on_chain.root != checkpoint.root:
        raise AuditError(
            "chain_anchor",
            f"{where} holds another root for tree size {checkpoint.tree_size}",
            on_chain.root,
            checkpoint.root,
        )
    if on_chain.confirmations < min_confirmations:
        raise AuditError(
            "chain_anchor",
            "the anchor is not final yet",
            f">= {min_confirmations} confirmations",
            f"{on_chain.confirmations} confirmations",
        )
    detail = (
        f"root anchored for tree size {checkpoint.tree_size} in {where}, block "
        f"{on_chain.block_number}, {on_chain.confirmations} confirmations"
    )
    if on_chain.tx_hash is not None and on_chain.tx_hash.lower() != ref.tx_hash.lower():
        detail += f" (by tx {on_chain.tx_hash}; the bundle names {ref.tx_hash})"
    return detail


def _subject(bundle: Bundle) -> dict[str, Any]:
    record = bundle.record.record
    return {
        "type": record.type,
        "actor": record.actor,
        "timestamp": record.timestamp,
        "index": bundle.inclusion.index,
        "leaf_hash": bundle.record.leaf_hash().hex(),
        "tree_size": bundle.checkpoint.tree_size,
        "root": bundle.checkpoint.root.hex(),
        "chain_id": bundle.anchor.chain_id,
        "registry_address": bundle.anchor.registry_address,
        "tx_hash": bundle.anchor.tx_hash,
    }
