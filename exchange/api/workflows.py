"""Reads that follow a participant's work: an order's records with their log indexes
and anchor state (``GET /orders/{order_id}/records``) and the operators' queue of
listings and providers awaiting a decision (``GET /operator/queue``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from exchange.api.deps import CurrentParticipant, SessionDep, require_role
from exchange.api.examples import ok
from exchange.api.params import OrderIdPath
from exchange.api.responses import signed_errors
from exchange.events.order_records import OrderRecords, order_records
from exchange.orders.models import Order
from exchange.orders.service import get_order
from exchange.participants.models import Principal, Role
from exchange.review_queue import review_queue
from ledger.protocol.review_queue import ReviewQueue

__all__ = ["router"]

router = APIRouter()

Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]


@router.get(
    "/orders/{order_id}/records",
    tags=["orders"],
    response_model=OrderRecords,
    summary="An order's records: log index, type, actor and anchor state of each",
    responses={
        **ok(200, "order_records"),
        **signed_errors(
            {404: "order_not_found (also for an order you may not see)", 422: "invalid_request"}
        ),
    },
)
def get_order_records(
    order_id: OrderIdPath, principal: CurrentParticipant, session: SessionDep
) -> OrderRecords:
    """Every record about the order in log order (placement, delivery, acceptance,
    settlement, dispute, resolution, revocation, computations), each with the anchor
    covering it: ``pending`` while its receipt is not ready (``GET /receipts/{index}``
    answers 409 ``receipt_pending``), then ``anchored`` and ``final``. Who may read
    the order may read its records."""
    get_order(session, principal, order_id)  # 404 unless the caller may see it
    row = session.get(Order, order_id)
    assert row is not None
    return order_records(session, row)


@router.get(
    "/operator/queue",
    tags=["participants"],
    response_model=ReviewQueue,
    summary="What awaits the operators: listings to review, providers to approve",
    responses={**ok(200, "operator_queue"), **signed_errors({422: "invalid_request"})},
)
def get_operator_queue(
    _operator: Operator,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewQueue:
    """Listings ``submitted`` or ``under_review`` (longest waiting first) and
    providers ``unverified`` (in the order they registered), at most ``limit`` of
    each; operators only."""
    return review_queue(session, limit)
