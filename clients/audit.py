"""The auditor's side: check receipts and the whole log against the chain.

Nothing here trusts the exchange. The chain (through :mod:`contracts.chain`)
is the authority for anchored roots; the exchange is only asked, over its
public GET endpoints, for the data that must match them.

* :class:`ChainAnchorSource` implements :class:`ledger.audit.AnchorSource`
  over a JSON-RPC endpoint: the root stored in ``AnchorRegistry`` for a tree
  size, the ``Anchored`` event's transaction and block, and its confirmations
  (``head - block + 1``).
* :func:`audit_bundle` audits one receipt bundle (:func:`verify_bundle_file`
  reads it from a file: the ``shancheng audit verify`` command; the SDK's
  ``verify_receipt`` passes it in memory): :func:`ledger.audit.verify_bundle`
  with a :class:`ChainAnchorSource`, or offline.
* :func:`walk_log` audits the log (``shancheng audit log``): every anchored
  checkpoint on chain against the exchange's checkpoint of that size, every
  consecutive pair of anchored roots with the exchange's consistency proof,
  the exchange's latest checkpoint against the last anchor, and random
  entries (signature, promise, inclusion in the last anchored root). A
  rewritten history cannot pass: its roots differ from the anchored ones, and
  no consistency proof links them.

Failures raise :class:`ledger.audit.AuditError` (``step`` is
``checkpoint``, ``consistency`` or ``entry`` for the walk);
an unreachable chain or exchange raises
:class:`ledger.audit.AuditInconclusiveError`.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts.chain import ChainClient
from contracts.errors import ChainError
from ledger.audit import (
    AnchorLookupError,
    AuditError,
    AuditInconclusiveError,
    AuditReport,
    OnChainAnchor,
    WrongChainError,
    verify_bundle,
)
from ledger.bundle import Bundle
from ledger.checkpoint import Checkpoint, KeyMismatchError, Promise
from ledger.errors import InvalidSignature, KeyFormatError
from ledger.merkle import ProofError, RootMismatchError, verify_consistency, verify_inclusion
from ledger.records import ActorMismatchError, RecordFormatError, SignedRecord
from ledger.sm2 import SM2PublicKey

__all__ = [
    "DEFAULT_SPOT_CHECKS",
    "AnchoredRoot",
    "ChainAnchorSource",
    "LogAuditReport",
    "LogCheck",
    "audit_bundle",
    "verify_bundle_file",
    "walk_log",
]

DEFAULT_SPOT_CHECKS = 8


# --------------------------------------------------------------------------- chain side


class ChainAnchorSource:
    """:class:`ledger.audit.AnchorSource` over an EVM JSON-RPC endpoint (read-only)."""

    def __init__(self, rpc_url: str, *, timeout: float = 10.0) -> None:
        self.rpc_url = rpc_url
        self._chain = ChainClient(rpc_url, timeout=timeout)

    def anchored_root(
        self, chain_id: int, registry_address: str, tree_size: int
    ) -> OnChainAnchor | None:
        try:
            actual = self._chain.chain_id()
            if actual != chain_id:
                raise WrongChainError(chain_id, actual)
            registry = self._chain.registry(registry_address)
            if not self._chain.code_at(registry.address):
                return None  # no contract there: nothing is anchored in it
            stored = registry.anchor_of(tree_size)
            if stored is None:
                return None
            event = registry.find_anchor_event(tree_size)
            head = self._chain.block_number()
        except ChainError as exc:
            raise AnchorLookupError(
                f"cannot read registry {registry_address} at {self.rpc_url}: {exc}"
            ) from None
        if event is None or event.block_number is None:
            raise AnchorLookupError(
                f"tree size {tree_size} is stored in registry {registry_address} but the node "
                "serves no Anchored event for it (pruned logs?)"
            )
        return OnChainAnchor(
            root=stored.root,
            block_number=event.block_number,
            tx_hash=event.tx_hash,
            confirmations=max(0, head - event.block_number + 1),
        )


@dataclass(frozen=True, slots=True)
class AnchoredRoot:
    """One ``Anchored`` event of the registry."""

    tree_size: int
    root: bytes
    block_number: int | None
    tx_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "block_number": self.block_number,
            "tx_hash": self.tx_hash,
        }


def _anchored_roots(
    rpc_url: str, registry: str, from_block: int, timeout: float
) -> tuple[int, list[AnchoredRoot]]:
    chain = ChainClient(rpc_url, timeout=timeout)
    try:
        chain_id = chain.chain_id()
        client = chain.registry(registry)
        if not chain.code_at(client.address):
            raise AuditInconclusiveError(
                f"there is no contract at {registry} on chain {chain_id}: wrong --registry?"
            )
        events = client.anchored_events(from_block)
    except ChainError as exc:
        raise AuditInconclusiveError(f"cannot read registry {registry}: {exc}") from None
    roots = sorted(
        (AnchoredRoot(e.tree_size, e.root, e.block_number, e.tx_hash) for e in events),
        key=lambda a: a.tree_size,
    )
    return chain_id, roots


# --------------------------------------------------------------------------- bundles


def audit_bundle(
    bundle: Bundle,
    rpc_url: str | None = None,
    registry: str | None = None,
    *,
    offline: bool = False,
    trusted_log_key: SM2PublicKey | None = None,
    min_confirmations: int = 1,
    timeout: float = 10.0,
) -> AuditReport:
    """Audit a parsed ``bundle``: the one code path behind ``shancheng audit verify``,
    :func:`verify_bundle_file` and the SDK's ``verify_receipt``.

    Online (the default) it needs ``rpc_url`` and the trusted ``registry``
    address; ``offline`` runs every step but ``chain_anchor``. Raises
    :class:`ledger.audit.AuditError` (a step failed) or
    :class:`ledger.audit.AuditInconclusiveError` (the chain could not be read).
    """
    if offline:
        return verify_bundle(
            bundle, anchors=None, trusted_log_key=trusted_log_key, trusted_registry=registry
        )
    if rpc_url is None or registry is None:
        raise ValueError("an online audit needs rpc_url and registry (or offline=True)")
    return verify_bundle(
        bundle,
        anchors=ChainAnchorSource(rpc_url, timeout=timeout),
        trusted_log_key=trusted_log_key,
        trusted_registry=registry,
        min_confirmations=min_confirmations,
    )


def verify_bundle_file(
    path: str | Path,
    rpc_url: str | None = None,
    registry: str | None = None,
    *,
    offline: bool = False,
    trusted_log_key: SM2PublicKey | None = None,
    min_confirmations: int = 1,
    timeout: float = 10.0,
) -> AuditReport:
    """Audit the bundle in the JSON file at ``path`` (:func:`audit_bundle`).

    Raises ``OSError`` (unreadable file), :class:`ledger.bundle.BundleFormatError`
    (not a v1 bundle), and what :func:`audit_bundle` raises.
    """
    bundle = Bundle.from_json(Path(path).read_bytes())
    return audit_bundle(
        bundle,
        rpc_url,
        registry,
        offline=offline,
        trusted_log_key=trusted_log_key,
        min_confirmations=min_confirmations,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- the log walk


@dataclass(frozen=True, slots=True)
class LogCheck:
    """One check of the walk that passed."""

    step: str
    subject: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "subject": self.subject, "detail": self.detail}


@dataclass(slots=True)
class LogAuditReport:
    """What :func:`walk_log` checked (all passed when it is returned)."""

    exchange_url: str
    chain_id: int | None = None
    registry: str = ""
    anchors: list[AnchoredRoot] = field(default_factory=list)
    checks: list[LogCheck] = field(default_factory=list)
    spot_checked: list[int] = field(default_factory=list)

    def passed(self, step: str, subject: str, detail: str) -> None:
        self.checks.append(LogCheck(step, subject, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange_url": self.exchange_url,
            "chain_id": self.chain_id,
            "registry": self.registry,
            "anchors": [a.to_dict() for a in self.anchors],
            "checks": [c.to_dict() for c in self.checks],
            "spot_checked": list(self.spot_checked),
        }


class _Exchange:
    """The exchange's public GET endpoints. A transport failure or a 5xx is
    inconclusive; any other refusal to serve what an honest log must serve, or
    a malformed answer, is an :class:`AuditError` of ``step``."""

    def __init__(self, base_url: str, transport: httpx.BaseTransport | None, timeout: float):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def get(self, path: str, step: str, what: str, **params: int) -> dict[str, Any]:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise AuditInconclusiveError(
                f"cannot reach the exchange at {self.base_url}: {exc}"
            ) from None
        if response.status_code >= 500:
            raise AuditInconclusiveError(
                f"the exchange failed to serve {what}: HTTP {response.status_code}"
            )
        if response.status_code != 200:
            raise AuditError(
                step,
                f"the exchange does not serve {what}: HTTP {response.status_code} "
                f"{_error_code(response)}".rstrip(),
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AuditError(step, f"the exchange served malformed JSON for {what}")
        return body


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def _hashes(body: dict[str, Any], step: str, what: str) -> list[bytes]:
    raw = body.get("hashes")
    if not isinstance(raw, list):
        raise AuditError(step, f"{what}: the proof has no list of hashes")
    out: list[bytes] = []
    for h in raw:
        try:
            node = bytes.fromhex(h) if isinstance(h, str) else b""
        except ValueError:
            node = b""
        if len(node) != 32:
            raise AuditError(step, f"{what}: malformed proof node {h!r}")
        out.append(node)
    return out


def _proof_error(step: str, what: str, exc: ProofError) -> AuditError:
    if isinstance(exc, RootMismatchError):
        return AuditError(
            step,
            f"{what}: the proof does not lead to the anchored {exc.which}",
            exc.expected,
            exc.calculated,
        )
    return AuditError(step, f"{what}: {exc}")


def walk_log(
    exchange_url: str,
    rpc_url: str,
    registry: str,
    *,
    spot_checks: int = DEFAULT_SPOT_CHECKS,
    trusted_log_key: SM2PublicKey | None = None,
    transport: httpx.BaseTransport | None = None,
    spot_indices: Sequence[int] | None = None,
    from_block: int = 0,
    timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> LogAuditReport:
    """Audit the exchange's log against the anchors in ``registry``.

    Steps, each raising :class:`ledger.audit.AuditError` with ``step`` =

    * ``checkpoint``: for every anchored tree size, the exchange's checkpoint of
      that size has the anchored root and is signed by the log key (the
      ``trusted_log_key``, else the key the exchange publishes); the
      exchange's latest checkpoint is signed and not behind the last anchor;
    * ``consistency``: every consecutive pair of anchored sizes (and the last
      anchor to the latest checkpoint) is linked by the exchange's consistency
      proof, verified against the on-chain roots;
    * ``entry``: ``spot_checks`` entries chosen with a CSPRNG (unpredictable
      to the exchange), or exactly ``spot_indices``: the actor's signature,
      the leaf hash, the promise, and an inclusion proof in the last anchored
      root.

    ``from_block`` bounds the search for ``Anchored`` events (the registry's
    deployment block on a long chain). ``transport`` is handed to httpx
    (tests serve a fake exchange with ``httpx.MockTransport``). Raises
    :class:`ledger.audit.AuditInconclusiveError` when the chain or the
    exchange cannot be read. The failing error carries the partial report in
    ``.report``. ``progress(done, total)`` is told of each check made (a long
    log has many anchors).
    """
    report = LogAuditReport(exchange_url=exchange_url, registry=registry)
    exchange = _Exchange(exchange_url, transport, timeout)
    try:
        report.chain_id, report.anchors = _anchored_roots(rpc_url, registry, from_block, timeout)
        if report.anchors:
            log_key = trusted_log_key or _published_log_key(exchange)
            _walk(report, exchange, log_key, spot_checks, spot_indices, progress)
    except (AuditError, AuditInconclusiveError) as exc:
        exc.report = report
        raise
    finally:
        exchange.close()
    return report


def _walk(
    report: LogAuditReport,
    exchange: _Exchange,
    log_key: SM2PublicKey,
    spot_checks: int,
    spot_indices: Sequence[int] | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    last = report.anchors[-1]
    chosen = _choose(last.tree_size, spot_checks, spot_indices)
    total = 2 * len(report.anchors) + len(chosen)  # checkpoints, links (+ latest), entries
    done = 0

    def checked() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for anchored in report.anchors:
        _check_anchored_checkpoint(report, exchange, anchored, log_key)
        checked()
    for older, newer in itertools.pairwise(report.anchors):
        _check_consistency(
            report, exchange, older.tree_size, older.root, newer.tree_size, newer.root
        )
        checked()
    _check_latest(report, exchange, last, log_key)
    checked()
    for index in chosen:
        _check_entry(report, exchange, index, last, log_key)
        report.spot_checked.append(index)
        checked()


def _published_log_key(exchange: _Exchange) -> SM2PublicKey:
    body = exchange.get("/.well-known/shancheng/log-key", "checkpoint", "the log key")
    pem = body.get("public_key")
    try:
        if not isinstance(pem, str):
            raise KeyFormatError("no public_key")
        return SM2PublicKey.from_pem(pem)
    except KeyFormatError as exc:
        raise AuditError(
            "checkpoint", f"the exchange publishes an unusable log key: {exc}"
        ) from None


def _verify_signed(
    step: str, what: str, statement: Promise | Checkpoint, key: SM2PublicKey
) -> None:
    try:
        statement.verify(key)
    except KeyMismatchError as exc:
        raise AuditError(
            step, f"{what} is signed by another log key", exc.actual, exc.expected
        ) from None
    except InvalidSignature:
        raise AuditError(
            step,
            f"{what}: the log's signature does not verify",
            "a valid signature",
            "an invalid signature",
        ) from None


def _fetch_checkpoint(exchange: _Exchange, path: str, what: str) -> Checkpoint:
    body = exchange.get(path, "checkpoint", what)
    try:
        return Checkpoint.from_dict(body)
    except RecordFormatError as exc:
        raise AuditError("checkpoint", f"{what} is malformed: {exc}") from None


def _check_anchored_checkpoint(
    report: LogAuditReport, exchange: _Exchange, anchored: AnchoredRoot, log_key: SM2PublicKey
) -> None:
    n = anchored.tree_size
    what = f"the checkpoint of anchored tree size {n}"
    checkpoint = _fetch_checkpoint(exchange, f"/log/checkpoints/{n}", what)
    if checkpoint.tree_size != n:
        raise AuditError(
            "checkpoint", f"asked for {what}, got another size", n, checkpoint.tree_size
        )
    if checkpoint.root != anchored.root:
        raise AuditError(
            "checkpoint",
            f"tree size {n}: the exchange's checkpoint root differs from the root anchored "
            "on chain",
            anchored.root,
            checkpoint.root,
        )
    _verify_signed("checkpoint", f"{what}", checkpoint, log_key)
    report.passed("checkpoint", f"tree size {n}", f"root {anchored.root.hex()} matches the chain")


def _check_consistency(
    report: LogAuditReport,
    exchange: _Exchange,
    m: int,
    old_root: bytes,
    n: int,
    new_root: bytes,
) -> None:
    what = f"tree sizes {m} → {n}"
    body = exchange.get(
        "/log/proofs/consistency",
        "consistency",
        f"the consistency proof {m} → {n}",
        first=m,
        second=n,
    )
    if body.get("first") != m or body.get("second") != n:
        raise AuditError(
            "consistency",
            f"{what}: the proof is for other sizes",
            f"{m} → {n}",
            f"{body.get('first')} → {body.get('second')}",
        )
    proof = _hashes(body, "consistency", what)
    try:
        verify_consistency(m, n, old_root, new_root, proof)
    except ProofError as exc:
        raise _proof_error("consistency", what, exc) from None
    report.passed("consistency", what, f"{len(proof)}-node proof links the roots")


def _check_latest(
    report: LogAuditReport, exchange: _Exchange, last: AnchoredRoot, log_key: SM2PublicKey
) -> None:
    latest = _fetch_checkpoint(exchange, "/log/checkpoint", "the latest checkpoint")
    _verify_signed("checkpoint", "the latest checkpoint", latest, log_key)
    if latest.tree_size < last.tree_size:
        raise AuditError(
            "checkpoint",
            "the exchange's latest checkpoint is behind the last anchored tree size",
            f"tree size >= {last.tree_size}",
            latest.tree_size,
        )
    report.passed("checkpoint", "latest", f"tree size {latest.tree_size} is signed")
    if latest.tree_size == last.tree_size:
        if latest.root != last.root:
            raise AuditError(
                "checkpoint",
                f"tree size {last.tree_size}: the latest checkpoint's root differs from the chain",
                last.root,
                latest.root,
            )
        return
    _check_consistency(report, exchange, last.tree_size, last.root, latest.tree_size, latest.root)


def _choose(tree_size: int, count: int, forced: Sequence[int] | None) -> list[int]:
    if forced is not None:
        bad = [i for i in forced if not 0 <= i < tree_size]
        if bad:
            raise ValueError(f"spot indices {bad} outside the anchored tree of size {tree_size}")
        return list(forced)
    return sorted(secrets.SystemRandom().sample(range(tree_size), min(count, tree_size)))


def _check_entry(
    report: LogAuditReport,
    exchange: _Exchange,
    index: int,
    last: AnchoredRoot,
    log_key: SM2PublicKey,
) -> None:
    what = f"entry {index}"
    body = exchange.get(f"/log/entries/{index}", "entry", what)
    if body.get("index") != index:
        raise AuditError("entry", f"asked for {what}, got another index", index, body.get("index"))
    try:
        signed = SignedRecord.from_dict(body.get("record"), path="record")
        public_key = SM2PublicKey.from_pem(str(body.get("public_key")))
        promise = Promise.from_dict(body.get("promise"), path="promise")
    except (RecordFormatError, KeyFormatError) as exc:
        raise AuditError("entry", f"{what} is malformed: {exc}") from None
    try:
        signed.verify(public_key)
    except (ActorMismatchError, InvalidSignature) as exc:
        raise AuditError(
            "entry", f"{what}: the actor's signature does not verify ({exc})"
        ) from None
    leaf = signed.leaf_hash()
    if body.get("leaf_hash") != leaf.hex():
        raise AuditError(
            "entry",
            f"{what}: the served leaf hash is not the record's",
            leaf,
            body.get("leaf_hash"),
        )
    _verify_signed("entry", f"the promise of {what}", promise, log_key)
    if promise.leaf_hash != leaf or promise.index != index:
        raise AuditError(
            "entry",
            f"{what}: the promise is for another leaf or index",
            f"{leaf.hex()}@{index}",
            f"{promise.leaf_hash.hex()}@{promise.index}",
        )
    proof_body = exchange.get(
        "/log/proofs/inclusion",
        "entry",
        f"the inclusion proof of {what}",
        index=index,
        tree_size=last.tree_size,
    )
    proof = _hashes(proof_body, "entry", what)
    try:
        verify_inclusion(leaf, index, last.tree_size, proof, last.root)
    except ProofError as exc:
        raise _proof_error(
            "entry", f"{what} in the anchored tree of size {last.tree_size}", exc
        ) from None
    report.passed(
        "entry", what, f"signed by {signed.record.actor}, included at size {last.tree_size}"
    )
