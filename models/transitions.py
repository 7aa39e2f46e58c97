"""Changing an order's status. Every move goes through `transition`, a compare-and-set UPDATE that
applies models/status.py's table, so racing payments, expiries and cancellations have exactly one
winner."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.jobs import CANCELLATION_TASK, CONFIRM_TASK, PAYMENT_RECEIVED_TASK
from core.settings import settings
from models.base import utcnow
from models.errors import Conflict, InvalidTransition, NotFound
from models.history import record
from models.orders import Order
from models.outbox import enqueue_job
from models.status import (
    CONFIRMED,
    DEADLINED,
    FINAL,
    VOID_TICKETS,
    Actor,
    OrderStatus,
    check_transition,
    is_payment_received,
)
from models.webhooks import notify_status

log = logging.getLogger("ticketq.orders")


def deadline_for(status: OrderStatus, now: datetime) -> datetime | None:
    if status is OrderStatus.INITIALIZING:
        return now + timedelta(seconds=settings.order_initializing_ttl_seconds)
    if status is OrderStatus.PENDING:
        return now + timedelta(seconds=settings.order_pending_ttl_seconds)
    return None


def load_order(session: Session, identifier: str, *, lock: bool = False) -> Order:
    stmt = sa.select(Order).where(Order.identifier == identifier)
    order = session.scalar(stmt.with_for_update() if lock else stmt)
    if order is None:
        raise NotFound("Order not found", pointer="/data/order")
    return order


_LOCK_ORDER = sa.select(Order.__table__.c.id).where(
    Order.__table__.c.id == sa.bindparam("order_id", type_=sa.Integer)).with_for_update()


def lock_order(session: Session, order_id: int) -> None:
    """Hold the order's row lock until the transaction ends, without loading the order again."""
    session.execute(_LOCK_ORDER, {"order_id": order_id})


def change_status(
    session: Session, order: Order, target: OrderStatus, *, by: str | None, now: datetime | None = None
) -> Order:
    """A co-organizer's move: mark a pending or placed order paid, or cancel it."""
    return transition(session, order, target, actor=Actor.ORGANIZER, by=by, now=now)


def transition(
    session: Session,
    order: Order,
    target: OrderStatus,
    *,
    actor: Actor,
    by: str | None = None,
    now: datetime | None = None,
) -> Order:
    """Apply the transition table, then compare-and-set: the UPDATE only matches the row if it is
    still in the status we checked (and, for a held order, still inside its deadline)."""
    now = now or utcnow()
    current = order.status
    check_transition(current, target, actor)
    guard = [Order.id == order.id, Order.status == current]
    if current in DEADLINED and target not in FINAL:
        guard.append(Order.expires_at > now)
    values: dict[str, Any] = {"status": target, "updated_at": now, "revision": Order.revision + 1}
    if target is not current:
        values["expires_at"] = deadline_for(target, now)
    values.update(_timestamps(target, now))
    result = session.execute(
        sa.update(Order).where(*guard).values(**values).execution_options(synchronize_session=False)
    )
    session.refresh(order)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if order.status is current:
            raise InvalidTransition("Order has expired", pointer="/data/status")
        raise Conflict(f"Order changed meanwhile; it is now {order.status.value}", pointer="/data/status")
    # The status the UPDATE wrote is what voids the tickets (status.py VOID_TICKETS): the door and the
    # downloads read it, so the revocation commits with the move and no later step can miss it.
    void = {"tickets": "void"} if target in VOID_TICKETS else {}
    record(session, order, target.value, actor=by, source=current.value, by_role=actor.value, **void)
    if target in CONFIRMED and current not in CONFIRMED:
        enqueue_job(session, CONFIRM_TASK, [order.identifier])
    if target is OrderStatus.CANCELLED:
        enqueue_job(session, CANCELLATION_TASK, [order.identifier])
    notify_status(session, order.event_id, order.identifier, target, now)  # committed with the move
    if is_payment_received(current, target):
        enqueue_job(session, PAYMENT_RECEIVED_TASK, [order.identifier])
    log.info("order %s %s -> %s by %s", order.identifier, current.value, target.value, by or actor.value)
    return order


def _timestamps(target: OrderStatus, now: datetime) -> dict[str, datetime]:
    column = {
        OrderStatus.COMPLETED: "completed_at",
        OrderStatus.CANCELLED: "cancelled_at",
        OrderStatus.EXPIRED: "expired_at",
    }.get(target)
    return {column: now} if column else {}
