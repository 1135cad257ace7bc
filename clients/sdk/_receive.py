"""The buyer's checks of a provider-held delivery, shared by both clients' ``receive``.

The clients fetch (the order, the delivery, the listing, the signer's key, the
two log entries, the ciphertext); a :class:`ReceiveJob` checks, with nothing
but what was fetched and the buyer's key:

1. ``signature``: the delivery record is the one logged at its index (the
   client verified that entry's promise against the log key), it is signed by
   a provider of the listing (their registered key), and it is about this
   order, listing version and buyer;
2. ``range`` / ``content_digest`` (before any download): a quantity order's
   record names exactly the rows the order bought, and proves them against the
   row root and row count the provider signed for the listing version; a
   whole-dataset record's plaintext SM3 is the version's signed content digest;
3. ``ciphertext_sm3``: the downloaded bytes are the ciphertext the provider signed;
4. ``decrypt``: the content key unwraps with the buyer's key and every chunk
   authenticates (associated data :func:`ledger.protocol.delivery.deliverable_aad`);
5. ``plaintext_sm3``: the plaintext's SM3 and size are what the provider signed;
6. rows only, :func:`clients.slices.verify_slice` against the version's signed
   row root and row count, offset and count from the order (``range``,
   ``format``, ``row_count``, ``proof``, ``row_root``).

The listing version's signed values come from its own log entry (the
``listing.drafted``/``listing.edited``/``listing.version_added`` record whose
leaf hash the version shows), signed by the listing's owner. Nothing reaches
``out_path`` unless every check passed; a failure raises
:class:`~clients.sdk.errors.DeliveryCheckError` with the evidence for a dispute.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from clients.sdk.errors import DeliveryCheck, DeliveryCheckError
from clients.sdk.market_models import Delivery, Listing, ListingVersion, Order, Received
from clients.slices import SLICE_CHECKS, SliceCheckError, verify_slice
from ledger import envelope, sm4
from ledger.errors import DecryptionError, InvalidSignature
from ledger.protocol.delivery import DELIVERY_ISSUED, ProviderDelivery, deliverable_aad
from ledger.records import ActorMismatchError, RecordFormatError, SignedRecord, thaw
from ledger.sm2 import SM2PrivateKey, SM2PublicKey
from ledger.sm3 import SM3Hasher, sm3_file

__all__ = ["VERSION_RECORDS", "ReceiveJob", "SignedVersion"]

VERSION_RECORDS: Final = frozenset({"listing.drafted", "listing.edited", "listing.version_added"})
"""Records that commit a listing version's content (version 1: the draft's)."""

_SLICE_FORMATS: Final = frozenset({"csv", "tsv", "jsonl", "parquet"})
_BLOCK: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class SignedVersion:
    """A listing version's content as its provider signed it."""

    version: int
    content_digest: str
    row_count: int
    row_root: str | None
    format: str
    log_index: int


class _HashingSink:
    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.hasher = SM3Hasher()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return int(self._handle.write(data))


class ReceiveJob:
    """One ``receive`` of ``order`` into ``out_path`` (see the module doc)."""

    def __init__(self, key: SM2PrivateKey, order: Order, listing: Listing, out_path: str | Path):
        self.key = key
        self.order = order
        self.listing = listing
        self.out = Path(out_path)
        self.ciphertext = self.out.with_name(f".{self.out.name}.deliverable")
        self._log_index: int | None = None

    # ------------------------------------------------------------------ evidence

    def fail(
        self, check: DeliveryCheck, message: str, expected: Any = None, actual: Any = None
    ) -> DeliveryCheckError:
        evidence: dict[str, Any] = {"check": check, "message": message, "order_id": self.order.id}
        if self._log_index is not None:
            evidence["delivery_log_index"] = self._log_index
        if expected is not None:
            evidence["expected"] = expected
        if actual is not None:
            evidence["actual"] = actual
        return DeliveryCheckError(check, message, evidence)

    # ------------------------------------------------------------------ before download

    def signer_key_id(self, delivery: Delivery) -> str:
        """The record's actor, if it is a provider of the listing (whose key to fetch)."""
        self._log_index = delivery.log_index
        actor = delivery.record.record.actor
        if actor not in self.listing.provider_keys():
            raise self.fail(
                "signature",
                f"the delivery record is signed by {actor}, not a provider of listing "
                f"{self.listing.id}",
                expected=sorted(self.listing.provider_keys()),
                actual=actor,
            )
        return actor

    def signed_version(
        self, version: ListingVersion, index: int, logged: SignedRecord
    ) -> SignedVersion:
        """The version's content as the listing's owner signed it in ``logged``, the
        record at log ``index`` (verified by the client) whose leaf hash the version shows."""
        check: DeliveryCheck = "content_digest" if self.order.row_range() is None else "row_root"
        record = logged.record
        if logged.leaf_hash().hex() != version.log_leaf_hash or record.type not in VERSION_RECORDS:
            raise self.fail(
                check, f"log entry {index} is not the record of listing version {version.version}"
            )
        payload = thaw(record.payload)
        signed_version = payload.get("version", 1) if record.type == "listing.version_added" else 1
        if payload.get("listing_id") != self.listing.id or signed_version != version.version:
            raise self.fail(
                check,
                f"log entry {index} is about listing {payload.get('listing_id')} version "
                f"{signed_version}, not {self.listing.id} version {version.version}",
            )
        if record.actor != self.listing.owner:
            raise self.fail(
                check, f"the version record is signed by {record.actor}, not the listing's owner"
            )
        try:
            return SignedVersion(
                version=version.version,
                content_digest=str(payload["content_digest"]),
                row_count=int(payload["row_count"]),
                row_root=payload.get("row_root"),
                format=str(payload.get("format", version.format)),
                log_index=index,
            )
        except (KeyError, TypeError, ValueError):
            raise self.fail(check, f"log entry {index} declares no content") from None

    def check_record(
        self,
        delivery: Delivery,
        logged: SignedRecord,
        signer: SM2PublicKey,
        version: SignedVersion,
    ) -> ProviderDelivery:
        """The provider-signed payload, once it is checked to be the record ``logged``
        at its index (verified by the client), signed by a provider, this order's,
        and consistent with the signed version."""
        signed = delivery.record
        if logged.leaf_hash() != signed.leaf_hash():
            raise self.fail(
                "signature",
                f"the delivery record is not the record logged at index {delivery.log_index}",
                expected=logged.leaf_hash().hex(),
                actual=signed.leaf_hash().hex(),
            )
        if signed.record.type != DELIVERY_ISSUED:
            raise self.fail("signature", f"the record is a {signed.record.type}")
        try:
            signed.verify(signer)
        except (ActorMismatchError, InvalidSignature) as exc:
            raise self.fail(
                "signature", f"the provider's signature does not verify: {exc}"
            ) from None
        try:
            payload = ProviderDelivery.from_dict(thaw(signed.record.payload))
        except RecordFormatError as exc:
            raise self.fail("signature", f"the signed payload is malformed: {exc}") from None
        order = self.order
        mine = (order.id, order.listing_id, order.version, order.buyer)
        theirs = (payload.order_id, payload.listing_id, payload.version, payload.buyer)
        if theirs != mine:
            raise self.fail(
                "signature",
                "the signed delivery is for another order, listing version or buyer",
                expected=list(mine),
                actual=list(theirs),
            )
        self._check_promised_content(payload, version)
        return payload

    def _check_promised_content(self, payload: ProviderDelivery, version: SignedVersion) -> None:
        bought = self.order.row_range()
        if bought is None:
            if payload.rows is not None:
                raise self.fail(
                    "range",
                    "the order is for the whole dataset, the delivery is of rows",
                    actual=payload.rows.to_dict(),
                )
            if payload.plaintext_sm3 != version.content_digest:
                raise self.fail(
                    "content_digest",
                    "the delivered plaintext is not the listing version's signed content",
                    expected=version.content_digest,
                    actual=payload.plaintext_sm3,
                )
            return
        if payload.rows != bought:
            raise self.fail(
                "range",
                f"the order bought rows [{bought.offset}, {bought.offset + bought.count})",
                expected=bought.to_dict(),
                actual=None if payload.rows is None else payload.rows.to_dict(),
            )
        proof = payload.range_proof
        assert proof is not None  # ProviderDelivery: rows and range_proof come together
        if version.row_root is None or proof.row_root != version.row_root:
            raise self.fail(
                "row_root",
                "the range proof is not against the listing version's signed row root",
                expected=version.row_root,
                actual=proof.row_root,
            )
        if proof.tree_size != version.row_count:
            raise self.fail(
                "row_count",
                "the range proof is not against the listing version's signed row count",
                expected=version.row_count,
                actual=proof.tree_size,
            )

    # ------------------------------------------------------------------ after download

    def open(self, payload: ProviderDelivery, version: SignedVersion) -> Received:
        """Check the downloaded ciphertext, decrypt it beside ``out_path``, check the
        plaintext, and only then move it to ``out_path``. The ciphertext is removed."""
        try:
            return self._open(payload, version)
        finally:
            self.ciphertext.unlink(missing_ok=True)

    def _open(self, payload: ProviderDelivery, version: SignedVersion) -> Received:
        size = self.ciphertext.stat().st_size
        digest = sm3_file(self.ciphertext, chunk_size=_BLOCK).hex()
        if (digest, size) != (payload.ciphertext_sm3, payload.ciphertext_size):
            raise self.fail(
                "ciphertext_sm3",
                "the downloaded ciphertext is not the one the provider signed",
                expected={"sm3": payload.ciphertext_sm3, "size": payload.ciphertext_size},
                actual={"sm3": digest, "size": size},
            )
        temporary = self.out.with_name(f".{self.out.name}.{secrets.token_hex(8)}.part")
        try:
            plain_sm3, plain_size = self._decrypt(payload, temporary)
            if (plain_sm3, plain_size) != (payload.plaintext_sm3, payload.plaintext_size):
                raise self.fail(
                    "plaintext_sm3",
                    "the decrypted plaintext is not the one the provider signed",
                    expected={"sm3": payload.plaintext_sm3, "size": payload.plaintext_size},
                    actual={"sm3": plain_sm3, "size": plain_size},
                )
            if payload.rows is not None:
                self._verify_rows(temporary, payload, version)
            os.replace(temporary, self.out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return Received(self.out, plain_sm3, plain_size, payload.rows, payload)

    def _decrypt(self, payload: ProviderDelivery, temporary: Path) -> tuple[str, int]:
        aad = deliverable_aad(self.order.id, self.order.listing_id, self.order.version)
        try:
            content_key = envelope.unwrap_key(self.key, payload.wrapped_key_bytes())
            with open(self.ciphertext, "rb") as src, open(temporary, "xb") as dst:
                sink = _HashingSink(dst)
                sm4.decrypt_stream(content_key, src, sink, aad)  # type: ignore[arg-type]
                dst.flush()
                os.fsync(dst.fileno())
        except DecryptionError as exc:
            raise self.fail("decrypt", f"the deliverable does not decrypt: {exc}") from None
        return sink.hasher.hexdigest(), sink.size

    def _verify_rows(
        self, plaintext: Path, payload: ProviderDelivery, version: SignedVersion
    ) -> None:
        bought, proof = payload.rows, payload.range_proof
        assert bought is not None and proof is not None and version.row_root is not None
        fmt = version.format if version.format in _SLICE_FORMATS else None
        try:
            verify_slice(
                plaintext,
                bought.offset,
                bought.count,
                version.row_count,
                bytes.fromhex(version.row_root),
                [bytes.fromhex(node) for node in proof.proof],
                format=fmt,
            )
        except SliceCheckError as exc:
            assert exc.check in SLICE_CHECKS
            raise self.fail(exc.check, str(exc)) from None
