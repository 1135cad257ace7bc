"""Deliver one paid order of a provider-held listing: cut, seal, upload, issue.

The steps, each recorded in the order's progress file (:class:`agent.state.AgentState`)
only once done, so a re-run after a crash at any point picks up where it stopped:

1. **seal**: cut what was bought (rows ``[offset, offset + count)`` with
   :func:`clients.slices.write_slice` and its range proof, or the whole file),
   encrypt it with a fresh SM4 key (:func:`ledger.sm4.encrypt_stream`, associated
   data :func:`ledger.protocol.delivery.deliverable_aad`) into ``work/<order>.sm4``
   while hashing plaintext and ciphertext, wrap the key to the buyer's registered
   key; progress ``sealed`` with the :class:`ProviderDelivery` payload (the raw
   key is never written down: a crash before ``sealed`` seals again with a new one);
2. **upload**: ``PUT /orders/{id}/deliverable`` (a re-upload replaces it); ``uploaded``;
3. **issue**: sign and post ``delivery.issued``; ``delivered``.

The exchange accepts one delivery per order, so a re-run that finds it done
(409 ``already_delivered``) records ``delivered``: each order ends delivered
exactly once. A refunded order (409 ``order_closed``) ends ``closed``.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol

from agent.state import AgentState
from clients.sdk import APIError, ExchangeClient, Order
from clients.slices import TEXT_FORMATS, SliceProof, open_text_slice, write_slice
from ledger import envelope, sm4
from ledger.protocol.delivery import ProviderDelivery, RangeProof, RowRange, deliverable_aad
from ledger.sm2 import SM2PublicKey
from ledger.sm3 import SM3Hasher

__all__ = ["Dataset", "Deliverer", "DeliveryRefused", "Outcome", "file_fingerprint"]

Outcome = Literal["delivered", "already_delivered", "closed"]
SLICEABLE: Final = frozenset({"csv", "tsv", "jsonl", "parquet"})


class DeliveryRefused(Exception):
    """This agent cannot deliver the order (another version, a file that changed, a
    format without rows); the message says why. Nothing was sent."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """A listing's current version as this agent serves it: the file, checked at start
    to be the version's content, and its row index."""

    listing_id: str
    version: int
    path: Path
    format: str
    content_digest: str
    row_count: int
    row_root: str | None
    row_index: Path | None
    fingerprint: tuple[int, int] | None = None
    """``(size, mtime_ns)`` of the file when it was checked (:func:`file_fingerprint`)."""


def file_fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    def __init__(self, handle: Readable) -> None:
        self._handle = handle
        self.hasher = SM3Hasher()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.hasher.update(data)
        self.size += len(data)
        return data


class _HashingWriter:
    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.hasher = SM3Hasher()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self._handle.write(data)


class Deliverer:
    """Delivers orders of ``datasets`` (listing id → :class:`Dataset`) as ``client``'s key."""

    def __init__(
        self,
        client: ExchangeClient,
        state: AgentState,
        datasets: Mapping[str, Dataset],
        log: Callable[[str], None],
    ) -> None:
        self.client = client
        self.state = state
        self.datasets = datasets
        self.log = log

    def serves(self, order: Order) -> bool:
        """Whether ``order`` is a paid, undelivered order of one of this agent's listings
        (a computation order is answered query by query: :mod:`agent.answer`)."""
        return (
            order.state == "placed"
            and order.listing_id in self.datasets
            and not order.terms.get("computation")
        )

    def deliver(self, order: Order) -> Outcome:
        """Bring ``order`` to delivered (or closed), from wherever a previous run stopped."""
        progress = self.state.order(order.id) or {"step": "new"}
        step = progress["step"]
        if step in ("delivered", "closed"):
            return "delivered" if step == "delivered" else "closed"
        if step == "new" or not self.state.sealed_path(order.id).exists():
            progress = self.seal(order, self.client.participant(order.buyer).sm2_public_key)
        try:
            if progress["step"] == "sealed":
                progress = self.upload(order, progress)
            return self.issue(order, progress)
        except APIError as exc:
            return self._settled(order, exc)

    # ------------------------------------------------------------------ steps

    def seal(self, order: Order, buyer: SM2PublicKey) -> dict[str, Any]:
        """Cut and encrypt what ``order`` bought, the key wrapped to ``buyer`` (the
        buyer's registered key)."""
        dataset = self._dataset_of(order)
        bought = order.row_range()
        key = sm4.generate_key()
        aad = deliverable_aad(order.id, order.listing_id, order.version)
        target = self.state.sealed_path(order.id)
        proof: RangeProof | None = None
        with contextlib.ExitStack() as stack:
            source: Readable
            if bought is None:
                source = stack.enter_context(open(dataset.path, "rb"))
            else:
                source, proof = self._cut(order, dataset, bought, stack)
            plain, cipher = _encrypt(source, target, key, aad)
        if bought is not None:
            self._check_unchanged(dataset, target)  # also while it was being read
        if bought is None and plain.hasher.hexdigest() != dataset.content_digest:
            target.unlink(missing_ok=True)
            raise DeliveryRefused(
                f"{dataset.path} changed since the agent started: its SM3 is no longer "
                f"version {dataset.version}'s"
            )
        delivery = ProviderDelivery(
            order_id=order.id,
            listing_id=order.listing_id,
            version=order.version,
            buyer=order.buyer,
            format=dataset.format,
            rows=bought,
            range_proof=proof,
            plaintext_sm3=plain.hasher.hexdigest(),
            plaintext_size=plain.size,
            ciphertext_sm3=cipher.hasher.hexdigest(),
            ciphertext_size=cipher.size,
            wrapped_key=base64.b64encode(envelope.wrap_key(buyer, key)).decode("ascii"),
        )
        progress = {"step": "sealed", "delivery": delivery.to_dict()}
        self.state.save_order(order.id, progress)
        self.log(
            f"order {order.id}: sealed {plain.size} bytes for buyer {order.buyer[:12]} "
            f"(ciphertext {cipher.size} bytes, SM3 {delivery.ciphertext_sm3[:16]}…)"
        )
        return progress

    def upload(self, order: Order, progress: dict[str, Any]) -> dict[str, Any]:
        uploaded = self.client.upload_deliverable(order.id, self.state.sealed_path(order.id))
        progress = {**progress, "step": "uploaded"}
        self.state.save_order(order.id, progress)
        self.log(f"order {order.id}: uploaded {uploaded.ciphertext_size} bytes")
        return progress

    def issue(self, order: Order, progress: dict[str, Any]) -> Outcome:
        delivery = ProviderDelivery.from_dict(progress["delivery"])
        try:
            delivered = self.client.issue_delivery(order.id, delivery)
        except APIError as exc:
            if exc.code != "deliverable_missing":
                raise
            self.log(f"order {order.id}: the exchange has no deliverable; uploading again")
            self.upload(order, progress)
            delivered = self.client.issue_delivery(order.id, delivery)
        self._finish(order, "delivered")
        index = delivered.log.index if delivered.log is not None else "?"
        self.log(f"order {order.id}: delivered (delivery.issued at log index {index})")
        return "delivered"

    # ------------------------------------------------------------------ helpers

    def _dataset_of(self, order: Order) -> Dataset:
        dataset = self.datasets.get(order.listing_id)
        if dataset is None:
            raise DeliveryRefused(f"listing {order.listing_id} is not served by this agent")
        if order.version != dataset.version:
            raise DeliveryRefused(
                f"order {order.id} is of version {order.version}, this agent serves "
                f"version {dataset.version} of listing {order.listing_id}"
            )
        return dataset

    def _cut(
        self, order: Order, dataset: Dataset, bought: RowRange, stack: contextlib.ExitStack
    ) -> tuple[Readable, RangeProof]:
        """The plaintext of the rows bought, as a stream open in ``stack``, and their proof.

        No self check of the slice (a full parse): the proof comes from the row index
        of the file checked at start-up, whose size and mtime must not have changed
        (checked before the cut and after the encryption). The buyer's check is the
        authoritative one. Text slices stream from the dataset's byte ranges (no
        plaintext copy on disk); Parquet slices are written to the state directory
        first and removed when ``stack`` closes."""
        if dataset.format not in SLICEABLE or dataset.row_root is None or not dataset.row_index:
            raise DeliveryRefused(f"listing {dataset.listing_id} has no rows to cut")
        self._check_unchanged(dataset)
        sliced: SliceProof
        reader: Readable
        if dataset.format in TEXT_FORMATS:
            reader, sliced = stack.enter_context(
                open_text_slice(
                    dataset.path,
                    bought.offset,
                    bought.count,
                    index=dataset.row_index,
                    format=dataset.format,
                )
            )
        else:
            out = self.state.slice_path(order.id)
            stack.callback(out.unlink, missing_ok=True)
            sliced = write_slice(
                dataset.path,
                out,
                bought.offset,
                bought.count,
                index=dataset.row_index,
                format=dataset.format,
                self_check=False,
            )
            reader = stack.enter_context(out.open("rb"))
        if sliced.row_root.hex() != dataset.row_root or sliced.tree_size != dataset.row_count:
            raise DeliveryRefused(f"{dataset.path}'s rows are not version {dataset.version}'s")
        end = bought.offset + bought.count
        self.log(f"order {order.id}: cut rows [{bought.offset}, {end}) of {dataset.path.name}")
        proof = RangeProof(
            sliced.tree_size, sliced.row_root.hex(), tuple(node.hex() for node in sliced.proof)
        )
        return reader, proof

    def _check_unchanged(self, dataset: Dataset, partial: Path | None = None) -> None:
        if (
            dataset.fingerprint is not None
            and file_fingerprint(dataset.path) != dataset.fingerprint
        ):
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise DeliveryRefused(
                f"{dataset.path} changed since the agent checked it; restart the agent to "
                "check it against the listing again"
            )

    def _settled(self, order: Order, exc: APIError) -> Outcome:
        """The exchange says the order needs nothing more (or re-raise)."""
        if exc.code == "already_delivered":
            self._finish(order, "delivered")
            self.log(f"order {order.id}: already delivered")
            return "already_delivered"
        if exc.code == "order_closed":
            self._finish(order, "closed")
            self.log(f"order {order.id}: closed (refunded or revoked), not delivered")
            return "closed"
        raise exc

    def _finish(self, order: Order, step: str) -> None:
        self.state.save_order(order.id, {"step": step})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state.sealed_path(order.id))


def _encrypt(
    source: Readable, target: Path, key: bytes, aad: bytes
) -> tuple[_HashingReader, _HashingWriter]:
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        with open(temporary, "wb") as dst:
            plain, cipher = _HashingReader(source), _HashingWriter(dst)
            sm4.encrypt_stream(key, plain, cipher, aad)  # type: ignore[arg-type]
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return plain, cipher
