"""Answer one computation on a provider-held listing: check, run, seal, upload, answer.

The steps, each recorded in the computation's progress file
(:class:`agent.state.AgentState`) only once done, so a re-run after a crash at any
point picks up where it stopped and the buyer gets exactly one answer:

1. **run**: the buyer's ``computation.requested`` record must verify with the
   buyer's registered key (the exchange cannot put words in the buyer's mouth);
   the SQL is validated authoritatively against the offer the provider signed
   for the order's version and run by the locked-down engine
   (:class:`agent.compute.ComputeEngine`, k, differential privacy, time and
   memory limits). The result's canonical bytes are encrypted with a fresh SM4
   key (associated data :func:`ledger.protocol.computation.result_aad`) into
   ``work/<id>.result`` and the key is wrapped to the buyer; progress ``sealed``
   with the ``computation.completed`` payload, or ``refusing`` with the
   ``computation.refused`` one (the validator's reason, ``timeout``,
   ``out_of_memory``, …). A crash before ``sealed`` runs the query again: nothing
   was released, so fresh noise costs no privacy; after it, the same noisy answer
   is the only one ever sent.
2. **upload** (completed only): ``PUT /computations/{id}/result``; ``uploaded``;
3. **answer**: sign and post the record; ``answered``.

An answer the exchange no longer takes (409 ``computation_closed``: answered
already, or refused by the exchange after the agent's silence; ``order_closed``:
refunded or revoked) ends ``closed``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from agent.compute import ComputationResult, ComputeEngine, ComputeLimits, DatasetMismatchError
from agent.deliver import Dataset
from agent.state import AgentState, atomic_write
from clients.sdk import APIError, Computation, ComputationCheckError, ExchangeClient
from clients.sdk._computations import requested_sql
from ledger import envelope, sm4
from ledger.computation.offer import ComputationOffer
from ledger.computation.validate import QueryRefusedError
from ledger.protocol.computation import ComputationCompleted, ComputationRefused, result_aad
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import sm3

__all__ = ["Answerer", "EngineCache", "Outcome"]

Outcome = Literal["completed", "refused", "closed"]
CLOSED_CODES: Final = frozenset({"computation_closed", "order_closed"})
ENGINE_FORMATS: Final = frozenset({"csv", "parquet"})


class _Refusal(Exception):
    """The agent refuses the computation with ``reason`` (nothing was run or sent)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class EngineCache:
    """One loaded :class:`ComputeEngine` per listing version (loading is the slow
    part: the query itself is milliseconds), built on first use."""

    def __init__(self, limits: ComputeLimits) -> None:
        self.limits = limits
        self._engines: dict[tuple[str, int], ComputeEngine] = {}

    def engine(self, dataset: Dataset, offer: ComputationOffer) -> ComputeEngine:
        key = (dataset.listing_id, dataset.version)
        engine = self._engines.get(key)
        if engine is None:
            if dataset.format not in ENGINE_FORMATS:
                raise _Refusal("dataset_unavailable", f"a {dataset.format} file is not queryable")
            try:
                engine = ComputeEngine(
                    dataset.path,
                    offer,
                    data_format="parquet" if dataset.format == "parquet" else "csv",
                    limits=self.limits,
                )
            except DatasetMismatchError as exc:
                raise _Refusal("dataset_unavailable", str(exc)) from None
            self._engines[key] = engine
        return engine

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


class Answerer:
    """Answers computations on ``datasets`` (listing id → :class:`Dataset`) as
    ``client``'s key."""

    def __init__(
        self,
        client: ExchangeClient,
        state: AgentState,
        datasets: Mapping[str, Dataset],
        engines: EngineCache,
        log: Callable[[str], None],
    ) -> None:
        self.client = client
        self.state = state
        self.datasets = datasets
        self.engines = engines
        self.log = log
        self._offers: dict[tuple[str, int], ComputationOffer | None] = {}

    def serves(self, computation: Computation) -> bool:
        return computation.state == "pending" and computation.listing_id in self.datasets

    def answer(self, computation: Computation) -> Outcome:
        """Bring ``computation`` to answered (or closed), from wherever a previous run
        stopped."""
        progress = self.state.computation(computation.id) or {"step": "new"}
        if progress["step"] in ("answered", "closed"):
            return "closed" if progress["step"] == "closed" else _outcome(progress["outcome"])
        lost = progress["step"] == "sealed" and not self.state.result_path(computation.id).exists()
        if progress["step"] == "new" or lost:
            progress = self.run(computation)
        try:
            if progress["step"] == "sealed":
                progress = self.upload(computation.id, progress)
            return self.post(computation.id, progress)
        except APIError as exc:
            if exc.code not in CLOSED_CODES:
                raise
            self._finish(computation.id, {"step": "closed"})
            self.log(f"computation {computation.id}: closed ({exc.code}), not answered")
            return "closed"

    # ------------------------------------------------------------------ steps

    def run(self, computation: Computation) -> dict[str, Any]:
        """Check and run the query; progress ``sealed`` or ``refusing`` (saved)."""
        try:
            completed = self._completed(computation)
        except _Refusal as exc:
            refused = ComputationRefused(computation.id, computation.order_id, exc.reason)
            progress = {"step": "refusing", "refused": refused.to_dict()}
            self.state.save_computation(computation.id, progress)
            self.log(f"computation {computation.id}: refusing: {exc.reason}: {exc.message}")
            return progress
        progress = {"step": "sealed", "completed": completed.to_dict()}
        self.state.save_computation(computation.id, progress)
        self.log(
            f"computation {computation.id}: answered {completed.rows_scanned} rows scanned, "
            f"ε {completed.epsilon_spent} (ciphertext {completed.ciphertext_size} bytes)"
        )
        return progress

    def upload(self, computation_id: str, progress: dict[str, Any]) -> dict[str, Any]:
        path = self.state.result_path(computation_id)
        self.client.upload_computation_result(computation_id, path)
        progress = {**progress, "step": "uploaded"}
        self.state.save_computation(computation_id, progress)
        return progress

    def post(self, computation_id: str, progress: dict[str, Any]) -> Outcome:
        outcome: ComputationCompleted | ComputationRefused
        if "completed" in progress:
            outcome = ComputationCompleted.from_dict(progress["completed"])
            try:
                answered = self.client.answer_computation(outcome)
            except APIError as exc:
                if exc.code != "result_missing":
                    raise
                self.log(f"computation {computation_id}: the exchange has no result; uploading")
                self.upload(computation_id, progress)
                answered = self.client.answer_computation(outcome)
        else:
            outcome = ComputationRefused.from_dict(progress["refused"])
            answered = self.client.answer_computation(outcome)
        result: Outcome = "completed" if answered.state == "completed" else "refused"
        self._finish(computation_id, {"step": "answered", "outcome": result})
        index = answered.log.index if answered.log is not None else "?"
        self.log(f"computation {computation_id}: {result} (log index {index})")
        return result

    # ------------------------------------------------------------------ helpers

    def _completed(self, computation: Computation) -> ComputationCompleted:
        dataset = self.datasets.get(computation.listing_id)
        if dataset is None or dataset.version != computation.version:
            raise _Refusal(
                "version_unavailable",
                f"this agent serves no version {computation.version} of {computation.listing_id}",
            )
        offer = self._offer(computation.listing_id, computation.version)
        if offer is None:
            raise _Refusal("not_a_computation", "the version offers no computation")
        buyer = self.client.participant(computation.buyer).sm2_public_key
        try:
            sql = requested_sql(computation, buyer)
        except ComputationCheckError as exc:
            raise _Refusal("invalid_request", exc.message) from None
        epsilon = None
        if offer.privacy is not None:
            epsilon = computation.epsilon
            if epsilon != offer.privacy.epsilon_per_query:
                raise _Refusal("epsilon_mismatch", f"ε {epsilon} is not the offer's per query")
        engine = self.engines.engine(dataset, offer)
        try:
            result = engine.run(sql, epsilon=epsilon)
        except QueryRefusedError as exc:
            raise _Refusal(exc.reason, exc.message) from None
        return self._seal(computation, sql, buyer, result)

    def _seal(
        self,
        computation: Computation,
        sql: str,
        buyer: SM2PublicKey,
        result: ComputationResult,
    ) -> ComputationCompleted:
        key = sm4.generate_key()
        sink = io.BytesIO()
        aad = result_aad(computation.id, computation.order_id)
        sm4.encrypt_stream(key, io.BytesIO(result.encoded), sink, aad)
        ciphertext = sink.getvalue()
        atomic_write(self.state.result_path(computation.id), ciphertext)
        return ComputationCompleted(
            computation_id=computation.id,
            order_id=computation.order_id,
            query_sm3=sm3(sql.encode("utf-8")).hex(),
            result_sm3=result.result_sm3,
            ciphertext_sm3=sm3(ciphertext).hex(),
            ciphertext_size=len(ciphertext),
            wrapped_key=base64.b64encode(envelope.wrap_key(buyer, key)).decode("ascii"),
            epsilon_spent=computation.epsilon_reserved,
            rows_scanned=result.rows_scanned,
        )

    def _offer(self, listing_id: str, version: int) -> ComputationOffer | None:
        key = (listing_id, version)
        if key not in self._offers:
            versions = self.client.versions(listing_id)
            found = [v for v in versions if v.version == version]
            self._offers[key] = found[0].computation_offer if found else None
        return self._offers[key]

    def _finish(self, computation_id: str, progress: dict[str, Any]) -> None:
        self.state.save_computation(computation_id, progress)
        self.state.result_path(computation_id).unlink(missing_ok=True)


def _outcome(value: Any) -> Outcome:
    return "completed" if value == "completed" else "refused"
