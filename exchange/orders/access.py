"""Whether an order's buyer may still receive its data: the one access rule.

Delivery (envelopes) and downloads both ask :func:`check_access`, so a buyer
whose access ended can neither get a fresh content key nor fetch the
ciphertext. Access ends when the provider revoked it (``revoked_at``, not a
state: the order keeps its state), when the order was refunded (the money
went back, so the data is no longer paid for), or, for a subscription, when
its paid period is over (``access_expires_at``; a renewal is a new order with
its own period), or when the days of use the listing's usage policy allows are
over (``use_until``, docs/policies.md).
"""

from __future__ import annotations

from exchange.errors import ConflictError, ForbiddenError
from exchange.orders.models import Order, OrderState

__all__ = ["AccessExpiredError", "AccessRevokedError", "OrderClosedError", "check_access"]


class AccessRevokedError(ForbiddenError):
    code = "access_revoked"


class AccessExpiredError(ForbiddenError):
    code = "access_expired"


class OrderClosedError(ConflictError):
    code = "order_closed"


def check_access(order: Order, now_ms: int) -> None:
    """Return if the buyer of ``order`` may receive its data at ``now_ms`` (ms
    since the epoch); raise otherwise, the most specific reason first:

    * :class:`AccessRevokedError` (403 ``access_revoked``): the provider revoked it;
    * :class:`OrderClosedError` (409 ``order_closed``): the order was refunded;
    * :class:`AccessExpiredError` (403 ``access_expired``): the subscription's
      paid period ended (at ``access_expires_at``, exclusive), or the policy's
      days of use did (``use_until``, exclusive).
    """
    if order.revoked_at is not None:
        reason = f": {order.revocation_reason}" if order.revocation_reason else ""
        raise AccessRevokedError(f"the provider revoked access to order {order.id}{reason}")
    if order.state == OrderState.REFUNDED:
        raise OrderClosedError(f"order {order.id} was refunded; its data is no longer delivered")
    if order.access_expires_at is not None and now_ms >= order.access_expires_at:
        raise AccessExpiredError(
            f"the paid period of order {order.id} ended at {order.access_expires_at} "
            "(ms since the epoch); renew the subscription"
        )
    if order.use_until is not None and now_ms >= order.use_until:
        raise AccessExpiredError(
            f"the days of use the usage policy allows for order {order.id} ended at "
            f"{order.use_until} (ms since the epoch)"
        )
