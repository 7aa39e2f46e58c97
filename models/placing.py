"""Placing an order: reserve its tickets (the ticket type rows locked, nothing oversold), then the
buyer's form, whose payment mode picks the status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.jobs import CONFIRM_TASK
from models.base import utcnow
from models.errors import InvalidInput, InvalidTransition, NotFound, SoldOut
from models.events import Event, TicketType
from models.history import record
from models.invoices import order_totals
from models.orders import Attendee, Order
from models.outbox import enqueue_job
from models.status import (
    CONFIRMED,
    CREATABLE_BY_ORGANIZER,
    DEADLINED,
    HOLDING,
    Actor,
    OrderStatus,
    check_buyer_may_update,
    check_locale_change,
    status_for_payment_mode,
)
from models.transitions import deadline_for, transition
from models.users import Principal
from models.webhooks import notify_status

log = logging.getLogger("ticketq.orders")


@dataclass(frozen=True)
class LineItem:
    ticket_type_id: int
    quantity: int


@dataclass(frozen=True)
class Person:
    name: str
    email: str


def holds_tickets(now: datetime) -> sa.ColumnElement[bool]:
    """SQL for "this order still holds its tickets" at `now`."""
    return sa.or_(
        Order.status.in_(HOLDING),
        sa.and_(Order.status.in_(DEADLINED), Order.expires_at > now),
    )


def create_order(
    session: Session,
    *,
    event_id: int,
    buyer: Principal,
    items: Sequence[LineItem],
    status: OrderStatus = OrderStatus.INITIALIZING,
    locale: str | None = None,
    now: datetime | None = None,
) -> Order:
    """Reserve tickets for a new order; the ticket type rows are locked so nothing is oversold.

    The caller decides whether `buyer` may pass an explicit `status` (co-organizers only).
    """
    now = now or utcnow()
    if status not in CREATABLE_BY_ORGANIZER:
        raise InvalidTransition(f"An order cannot be created as '{status.value}'", pointer="/data/status")
    wanted = _merge_items(items)
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("Event not found", pointer="/data/event")
    types = _lock_ticket_types(session, event_id, sorted(wanted))
    held = _held_counts(session, list(wanted), now)
    for ticket_id, quantity in wanted.items():
        if held.get(ticket_id, 0) + quantity > types[ticket_id].quantity:
            raise SoldOut("Tickets sold out", pointer="/data/tickets")
    order = Order(
        event_id=event_id,
        user_id=buyer.id,
        status=status,
        currency=event.currency,
        locale=locale or event.locale,
        # With prices before tax, the buyer pays the tax on top: the invoice's gross total.
        amount=order_totals(event, [(types[t].name, q, types[t].price) for t, q in wanted.items()]).gross,
        expires_at=deadline_for(status, now),
        created_at=now,
        updated_at=now,
        completed_at=now if status is OrderStatus.COMPLETED else None,
    )
    position = 0
    for ticket_id, quantity in wanted.items():
        for _ in range(quantity):
            order.attendees.append(Attendee(ticket_type_id=ticket_id, position=position))
            position += 1
    session.add(order)
    session.flush()
    record(session, order, "created", actor=buyer.email, status=status.value, tickets=position)
    if status in CONFIRMED:
        enqueue_job(session, CONFIRM_TASK, [order.identifier])
    notify_status(session, event_id, order.identifier, status, now)
    log.info("order %s created as %s with %d tickets", order.identifier, status.value, position)
    return order


def _merge_items(items: Sequence[LineItem]) -> dict[int, int]:
    if not items:
        raise InvalidInput("An order needs at least one ticket", pointer="/data/tickets")
    wanted: dict[int, int] = {}
    for item in items:
        if item.quantity < 1:
            raise InvalidInput("Ticket quantity must be at least 1", pointer="/data/tickets")
        wanted[item.ticket_type_id] = wanted.get(item.ticket_type_id, 0) + item.quantity
    return wanted


def _lock_ticket_types(session: Session, event_id: int, ids: list[int]) -> dict[int, TicketType]:
    rows = session.scalars(
        sa.select(TicketType).where(TicketType.id.in_(ids)).order_by(TicketType.id).with_for_update()
    ).all()
    found = {t.id: t for t in rows if t.event_id == event_id}
    if len(found) != len(ids):
        raise NotFound("Ticket type not found for this event", pointer="/data/tickets")
    return found


def _held_counts(session: Session, ticket_ids: list[int], now: datetime) -> dict[int, int]:
    rows = session.execute(
        sa.select(Attendee.ticket_type_id, sa.func.count())
        .join(Order, Order.id == Attendee.order_id)
        .where(Attendee.ticket_type_id.in_(ticket_ids), holds_tickets(now))
        .group_by(Attendee.ticket_type_id)
    ).all()
    return {ticket_id: count for ticket_id, count in rows}


def available(session: Session, ticket: TicketType, now: datetime | None = None) -> int:
    return ticket.quantity - _held_counts(session, [ticket.id], now or utcnow()).get(ticket.id, 0)


def submit_order(
    session: Session,
    order: Order,
    *,
    payment_mode: str,
    buyer: Person,
    attendees: Sequence[Person],
    by: str | None = None,
    now: datetime | None = None,
) -> Order:
    """The buyer's form: who pays, how, and who comes; the payment mode picks the status."""
    now = now or utcnow()
    check_buyer_may_update(order.status)
    target = status_for_payment_mode(payment_mode, order.amount == 0)
    if len(attendees) != len(order.attendees):
        raise InvalidInput(
            f"Expected {len(order.attendees)} attendees, one per ticket, got {len(attendees)}",
            pointer="/data/attendees",
        )
    order.payment_mode = payment_mode
    order.buyer_name, order.buyer_email = buyer.name, buyer.email
    for row, person in zip(order.attendees, attendees, strict=True):
        row.name, row.email = person.name, person.email
    record(session, order, "submitted", actor=by, payment_mode=payment_mode)
    return transition(session, order, target, actor=Actor.BUYER, by=by, now=now)


def change_locale(session: Session, order: Order, locale: str, *, actor: Actor = Actor.BUYER,
                  by: str | None = None) -> None:
    """The order's language (models/status.py says who may, when). A new revision: documents and
    emails from now on are in the new language (their fingerprint names it)."""
    check_locale_change(order.status, actor)
    if locale == order.locale:
        return
    record(session, order, "locale", actor=by, previous=order.locale, locale=locale)
    order.locale = locale
    order.revision += 1
