"""The certificate shapes the exchange answers (docs/certificates.md), parsed
strictly: a registration certificate of one listing version, its holders and its
history (each record's log index, for ``receipt(index)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients.sdk.models import Appended
from ledger.protocol.reader import JSONObject
from ledger.records import RecordFormatError

__all__ = ["RIGHTS", "Certificate", "CertificateRecord", "Holder"]

RIGHTS = ("holding", "processing", "operation")
"""持有权 (holding), 加工使用权 (processing/use), 经营权 (operation)."""


@dataclass(frozen=True, slots=True)
class Holder:
    participant: str
    share_bps: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Holder:
        o = JSONObject(data, where)
        return cls(participant=o.hex64("participant"), share_bps=o.integer("share_bps", minimum=1))

    def to_dict(self) -> dict[str, Any]:
        return {"participant": self.participant, "share_bps": self.share_bps}


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """One record of a certificate's history: ``receipt(index)`` proves it."""

    index: int
    type: str
    actor: str
    leaf_hash: str
    at: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CertificateRecord:
        o = JSONObject(data, where)
        return cls(
            index=o.integer("index"),
            type=o.text("type"),
            actor=o.hex64("actor"),
            leaf_hash=o.hex64("leaf_hash"),
            at=o.integer("at"),
        )


@dataclass(frozen=True, slots=True)
class Certificate:
    """A registration certificate (``state``: active, change_pending,
    transfer_offered, transfer_accepted, renewal_pending, cancellation_pending,
    cancelled); ``rights`` maps each of :data:`RIGHTS` to its holders. ``history``
    is filled by :meth:`~clients.sdk.ExchangeClient.certificate`, ``log`` by a
    lifecycle call."""

    number: str
    listing_id: str
    version: int
    title: str
    content_digest: str
    row_root: str | None
    rights: dict[str, tuple[Holder, ...]]
    scope: dict[str, Any]
    valid_from: int
    valid_until: int
    state: str
    expired: bool
    pending: dict[str, Any] | None
    issued_at: int
    updated_at: int
    history: tuple[CertificateRecord, ...] = ()
    log: Appended | None = None

    def holders(self) -> frozenset[str]:
        """Every participant holding any right."""
        return frozenset(h.participant for right in RIGHTS for h in self.rights[right])

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        path: str = "",
        history: tuple[CertificateRecord, ...] = (),
        log: Appended | None = None,
    ) -> Certificate:
        o = JSONObject(data, path)
        rights_obj = o.obj("rights")
        rights = {right: rights_obj.items(right, Holder.from_dict) for right in RIGHTS}
        for right, holders in rights.items():
            if sum(h.share_bps for h in holders) != 10_000:
                raise RecordFormatError("shares do not sum to 10000", path=o.path(right))
        return cls(
            number=o.text("number"),
            listing_id=o.text("listing_id"),
            version=o.integer("version", minimum=1),
            title=o.text("title"),
            content_digest=o.hex64("content_digest"),
            row_root=o.hex64("row_root") if o.has("row_root") else None,
            rights=rights,
            scope=o.mapping("scope"),
            valid_from=o.integer("valid_from"),
            valid_until=o.integer("valid_until"),
            state=o.text("state"),
            expired=o.boolean("expired"),
            pending=o.mapping("pending") if o.has("pending") else None,
            issued_at=o.integer("issued_at"),
            updated_at=o.integer("updated_at"),
            history=history,
            log=log,
        )

    @classmethod
    def from_view(cls, data: Any) -> Certificate:
        """``{"certificate", "history"}`` (``GET /certificates/{number}``)."""
        o = JSONObject(data, "")
        history = o.items("history", CertificateRecord.from_dict)
        return cls.from_dict(o.raw("certificate"), path="certificate", history=history)

    @classmethod
    def from_changed(cls, data: Any) -> Certificate:
        """``{"certificate", "log"}`` (a lifecycle record's answer)."""
        o = JSONObject(data, "")
        log = Appended.from_dict(o.raw("log"), path="log")
        return cls.from_dict(o.raw("certificate"), path="certificate", log=log)

    @classmethod
    def list_from(cls, data: Any) -> list[Certificate]:
        """``{"items": [...]}`` (``GET /certificates?listing=``)."""
        o = JSONObject(data, "")
        return list(o.items("items", lambda item, where: cls.from_dict(item, path=where)))
