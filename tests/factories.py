"""Builders for test data: an event with tickets, users with roles, orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from models import Event, EventRole, Order, Role, TicketType, User
from models.placing import LineItem, create_order
from models.status import OrderStatus
from models.users import get_or_create_user


def make_user(session: Session, email: str = "buyer@example.org", *, admin: bool = False) -> User:
    user = get_or_create_user(session, email, name=email.split("@")[0].title())
    user.is_admin = admin
    session.flush()
    return user


def make_event(
    session: Session,
    *,
    owner: User | None = None,
    name: str = "PyCon Test",
    tickets: tuple[tuple[str, str, int], ...] = (("Standard", "25.00", 100),),
) -> Event:
    start = datetime(2027, 5, 1, 9, 0, tzinfo=UTC)
    event = Event(name=name, starts_at=start, ends_at=start + timedelta(hours=8),
                  timezone="Europe/Berlin", location="Berlin", currency="EUR")
    for ticket_name, price, quantity in tickets:
        event.ticket_types.append(TicketType(name=ticket_name, price=Decimal(price), quantity=quantity))
    session.add(event)
    session.flush()
    if owner is not None:
        session.add(EventRole(event_id=event.id, user_id=owner.id, role=Role.OWNER))
        session.flush()
    return event


def make_order(
    session: Session,
    event: Event,
    buyer: User,
    *,
    quantity: int = 1,
    status: OrderStatus = OrderStatus.INITIALIZING,
    now: datetime | None = None,
) -> Order:
    return create_order(
        session, event_id=event.id, buyer=buyer,
        items=[LineItem(event.ticket_types[0].id, quantity)], status=status, now=now,
    )
