"""The events a user runs, a page at a time, and an event's ticket types with what is sold, held and left."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.base import utcnow
from models.events import Event, EventRole
from models.orders import Attendee, Order
from models.status import DEADLINED, HOLDING
from models.users import Principal


@dataclass
class EventsPage:
    events: list[tuple[Event, list[str]]]  # each with the caller's roles on it
    total: int


def events_run_by(session: Session, user: Principal, *, page: int, per_page: int) -> EventsPage:
    """Events the user has a role on (an admin: every event), latest start first."""
    query = sa.select(Event)
    if not user.is_admin:
        query = query.where(sa.exists().where(EventRole.event_id == Event.id, EventRole.user_id == user.id))
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    events = session.scalars(query.order_by(Event.starts_at.desc(), Event.id.desc())
                             .limit(per_page).offset((page - 1) * per_page)).all()
    roles: dict[int, list[str]] = {event.id: [] for event in events}
    if events:
        for event_id, role in session.execute(sa.select(EventRole.event_id, EventRole.role).where(
                EventRole.event_id.in_(roles), EventRole.user_id == user.id).order_by(EventRole.id)):
            roles[event_id].append(role.value)
    return EventsPage([(event, roles[event.id]) for event in events], total)


def ticket_stock(session: Session, event: Event, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per ticket type: sold (placed or completed orders), held (initializing or pending orders inside
    their window) and left; one statement, the same rule `create_order` counts by."""
    now = now or utcnow()
    sold = sa.func.count().filter(Order.status.in_(HOLDING))
    held = sa.func.count().filter(Order.status.in_(DEADLINED), Order.expires_at > now)
    counts = {row.ticket_type_id: (row.sold, row.held) for row in session.execute(
        sa.select(Attendee.ticket_type_id, sold.label("sold"), held.label("held"))
        .join(Order, Order.id == Attendee.order_id)
        .where(Order.event_id == event.id).group_by(Attendee.ticket_type_id))}
    stock = []
    for ticket in event.ticket_types:
        n_sold, n_held = counts.get(ticket.id, (0, 0))
        stock.append({"id": ticket.id, "name": ticket.name, "price": f"{ticket.price:.2f}", "quantity": ticket.quantity,
                      "sold": n_sold, "held": n_held, "left": max(0, ticket.quantity - n_sold - n_held)})
    return stock
