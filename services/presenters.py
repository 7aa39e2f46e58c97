"""Plain template data for an order: what the PDFs and emails show, computed once from the models."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, selectinload

from models.checkins import format_code
from models.errors import NotFound
from models.events import Event, EventRole
from models.orders import Attendee, Order
from services.invoicing import invoices_context, money, seller_of


def load_full_order(session: Session, where: sa.ColumnElement[bool]) -> Order:
    """The order with everything its documents and emails show, in two queries instead of dozens:
    the order with its user, event and attendees joined, then the event's roles with their users
    (a second join would multiply attendees by roles)."""
    order = session.execute(
        sa.select(Order).where(where).options(
            joinedload(Order.user),
            joinedload(Order.event).selectinload(Event.roles).joinedload(EventRole.user),
            joinedload(Order.attendees).joinedload(Attendee.ticket_type),
            selectinload(Order.invoices),
        )
    ).unique().scalar_one_or_none()
    if order is None:
        raise NotFound("Order not found", pointer="/data/order")
    return order


def event_times(event: Event) -> dict[str, str]:
    """Start and end in the event's own timezone: attendees read the local clock, not UTC."""
    zone = ZoneInfo(event.timezone)
    start, end = event.starts_at.astimezone(zone), event.ends_at.astimezone(zone)
    same_day = start.date() == end.date()
    end_text = end.strftime("%H:%M") if same_day else end.strftime("%A %d %B %Y, %H:%M")
    # The zone's abbreviation, or its offset where it has none ("+04"): "19:30 – 23:00 EDT". A
    # night that crosses a clock change names both ("01:30 CEST – 04:00 CET").
    start_zone, end_zone = start.strftime("%Z"), end.strftime("%Z")
    span = (f"{start:%H:%M} – {end:%H:%M} {end_zone}" if start_zone == end_zone
            else f"{start:%H:%M} {start_zone} – {end:%H:%M} {end_zone}")
    return {
        "date": start.strftime("%A %d %B %Y"),
        "time": span if same_day else f"{start:%H:%M} {start_zone} – {end_text} {end_zone}",
        "when": f"{start.strftime('%A %d %B %Y, %H:%M')} – {end_text} ({event.timezone})",
        "timezone": event.timezone,
    }


def buyer_of(order: Order) -> tuple[str, str]:
    """The buyer's name and address; an order a co-organizer created directly falls back to its user."""
    if order.buyer_email and order.buyer_name:
        return order.buyer_name, order.buyer_email
    user = order.user
    email = order.buyer_email or (user.email if user else "")
    name = order.buyer_name or (user.name if user and user.name else "") or email
    return name, email


def attendee_data(attendee: Attendee, currency: str) -> dict[str, Any]:
    price = attendee.ticket_type.price
    return {
        "id": attendee.id,
        "number": attendee.position + 1,
        "name": attendee.name or "",
        "email": attendee.email or "",
        "ticket": attendee.ticket_type.name,
        "secret": attendee.secret,
        "code": format_code(attendee.code),
        "price": money(price, currency) if price else "Free",
    }


def order_context(order: Order) -> dict[str, Any]:
    """Everything a template may show; templates get strings, never model objects."""
    event = order.event
    buyer_name, buyer_email = buyer_of(order)
    buyer = {"name": buyer_name, "email": buyer_email}
    return {
        "identifier": order.identifier,
        "order_code": order.identifier[:8].upper(),  # what subjects and people quote
        "status": order.status.value,
        "event": {"name": event.name, "location": event.location or "", **event_times(event)},
        "buyer": buyer,
        "seller": seller_of(event),
        "attendees": [attendee_data(a, order.currency) for a in order.attendees],
        "total": money(order.amount, order.currency),
        "payment_mode": order.payment_mode or "",
        "paid": order.completed_at is not None,  # cancelled later or not: did the money arrive?
        **invoices_context(order, buyer),
    }
