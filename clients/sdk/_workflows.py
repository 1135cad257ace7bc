"""The calls that follow a participant's work, built once for both clients (like
:mod:`clients.sdk._marketplace`): the listings one may see (a provider's own,
drafts and rejected ones included), an order's records with their log index and
anchor state, and the operators' review queue."""

from __future__ import annotations

from typing import Final

from clients.sdk._base import Call, _parsed
from clients.sdk._events import EventCalls
from clients.sdk.errors import ReceiptPendingError
from clients.sdk.workflow_models import ListingPage, OrderRecords, ReviewQueue

__all__ = ["LISTING_STATES", "WorkflowCalls"]

LISTING_STATES: Final = ("draft", "submitted", "under_review", "published", "rejected", "delisted")


class WorkflowCalls(EventCalls):
    """Call builders for listings by provider and state, order records, the queue."""

    def _listings_call(
        self, provider: str | None, state: str | None, limit: int, offset: int
    ) -> Call[ListingPage]:
        if state is not None and state not in LISTING_STATES:
            raise ValueError(f"state is one of {', '.join(LISTING_STATES)}, not {state!r}")
        if provider == "me":
            provider = self._require_key("listing your own listings").key_id()
        params: dict[str, str | int] = {"limit": int(limit), "offset": int(offset)}
        if provider is not None:
            params["provider"] = provider
        if state is not None:
            params["state"] = state
        return Call(
            "GET",
            "/listings",
            _parsed(ListingPage.from_dict),
            params=params,
            signed=self._optional_auth(),
        )

    def _order_records_call(self, order_id: str) -> Call[OrderRecords]:
        if not isinstance(order_id, str) or not order_id:
            raise ValueError("an order id is a non-empty string")
        return Call(
            "GET", f"/orders/{order_id}/records", _parsed(OrderRecords.from_dict), signed=True
        )

    def _operator_queue_call(self, limit: int) -> Call[ReviewQueue]:
        return Call(
            "GET",
            "/operator/queue",
            _parsed(ReviewQueue.from_dict),
            params={"limit": int(limit)},
            signed=True,
        )

    @staticmethod
    def _pending_delay(
        pending: ReceiptPendingError, remaining: float, interval: float | None
    ) -> float | None:
        """Seconds to wait before asking again for a pending receipt: ``interval``, or
        (``None``) the exchange's ``retry_after`` (1 s when it gave none), never past the
        deadline ``remaining`` seconds away; ``None`` once that has passed: give up."""
        if remaining <= 0:
            return None
        wanted = interval if interval is not None else float(pending.retry_after or 1)
        return max(0.0, min(wanted, remaining))
