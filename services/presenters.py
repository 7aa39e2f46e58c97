"""Plain template data for an order: what the PDFs and emails show, computed once from the models."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, selectinload

from core.locales import DEFAULT, direction
from models.checkins import format_code
from models.errors import NotFound
from models.events import Event, EventRole
from models.orders import Attendee, Order
from services.formats import event_times, money, number
from services.i18n import translations
from services.invoicing import invoices_context, seller_of


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


def buyer_of(order: Order) -> tuple[str, str]:
    """The buyer's name and address; an order a co-organizer created directly falls back to its user."""
    if order.buyer_email and order.buyer_name:
        return order.buyer_name, order.buyer_email
    user = order.user
    email = order.buyer_email or (user.email if user else "")
    name = order.buyer_name or (user.name if user and user.name else "") or email
    return name, email


def attendee_data(attendee: Attendee, currency: str, locale: str) -> dict[str, Any]:
    price = attendee.ticket_type.price
    return {
        "id": attendee.id,
        "number": number(attendee.position + 1, locale),
        "name": attendee.name or "",
        "email": attendee.email or "",
        "ticket": attendee.ticket_type.name,
        "secret": attendee.secret,
        "code": format_code(attendee.code),
        "price": money(price, currency, locale) if price else translations(locale).gettext("Free"),
    }


def order_context(order: Order, locale: str | None = None) -> dict[str, Any]:
    """Everything a template may show, in the order's locale unless another is given (an organizer's
    notification is in the event's); templates get strings, never model objects."""
    event = order.event
    locale = locale or order.locale or DEFAULT  # an order not flushed yet has no default filled in
    buyer_name, buyer_email = buyer_of(order)
    buyer = {"name": buyer_name, "email": buyer_email}
    return {
        "locale": locale,
        "dir": direction(locale),
        "identifier": order.identifier,
        "order_code": order.identifier[:8].upper(),  # what subjects and people quote
        "status": order.status.value,
        "event": {"name": event.name, "location": event.location or "", **event_times(event, locale)},
        "buyer": buyer,
        "seller": seller_of(event, locale),
        "attendees": [attendee_data(a, order.currency, locale) for a in order.attendees],
        "attendee_count": number(len(order.attendees), locale),
        "total": money(order.amount, order.currency, locale),
        "payment_mode": order.payment_mode or "",
        "paid": order.completed_at is not None,  # cancelled later or not: did the money arrive?
        **invoices_context(order, buyer, locale),
    }
