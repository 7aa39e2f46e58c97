"""Events, their ticket types and the roles of the people who run them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query

from api.access import COORGANIZER_REQUIRED, find_event, require_coorganizer, require_granter
from api.deps import CurrentUser, DbSession, EventLookup, closes_session
from api.schemas import (
    DB_INT_MAX,
    MAX_PAGE,
    EventCreate,
    EventOrders,
    EventPublic,
    RoleCreate,
    RolePublic,
    TicketCreate,
    TicketPublic,
    decimal_string,
)
from api.seller import SELLER_FIELDS
from models.errors import Conflict, Forbidden, InvalidInput
from models.events import Event, EventRole, Role, TicketType
from models.listing import DEFAULT_PER_PAGE, MAX_PER_PAGE, list_event_orders
from models.status import OrderStatus
from models.users import get_or_create_user

router = APIRouter(prefix="/v1/events", tags=["events"])
EventId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]


@router.post("", status_code=201, response_model=EventPublic)
@closes_session
def create_event(body: EventCreate, user: CurrentUser, session: DbSession) -> EventPublic:
    """Create an event; the caller becomes its owner."""
    if body.ends_at < body.starts_at:
        raise InvalidInput("An event cannot end before it starts", pointer="/data/ends_at")
    tax_rate = Decimal(body.tax_rate)
    if tax_rate > 0 and not body.seller_vat_id:  # EN 16931 BR-S-02: an invoice charging VAT names the VAT ID
        raise InvalidInput("A tax rate above 0 needs the seller's VAT ID", pointer="/data/seller_vat_id")
    event = Event(name=body.name, starts_at=body.starts_at, ends_at=body.ends_at, timezone=body.timezone,
                  location=body.location, currency=body.currency, tax_rate=tax_rate,
                  **body.model_dump(include=SELLER_FIELDS))
    session.add(event)
    session.flush()
    session.add(EventRole(event_id=event.id, user_id=user.id, role=Role.OWNER))
    session.commit()
    session.refresh(event)  # answer with what was stored (UTC), not with what was sent
    return EventPublic.model_validate(event, from_attributes=True)


@router.post("/{event_id}/tickets", status_code=201, response_model=TicketPublic)
@closes_session
def create_ticket_type(event_id: EventId, body: TicketCreate, user: CurrentUser, session: DbSession) -> TicketPublic:
    """Add a ticket type (co-organizers)."""
    find_event(session, event_id)
    require_coorganizer(session, user, event_id)
    ticket = TicketType(event_id=event_id, name=body.name, price=Decimal(body.price), quantity=body.quantity)
    session.add(ticket)
    session.commit()
    return TicketPublic(id=ticket.id, event=event_id, name=ticket.name, price=decimal_string(ticket.price),
                        quantity=ticket.quantity)


@router.post("/{event_id}/roles", status_code=201, response_model=RolePublic)
@closes_session
def grant_role(event_id: EventId, body: RoleCreate, user: CurrentUser, session: DbSession) -> RolePublic:
    """Make someone organizer or coorganizer (owner and organizers); unknown emails get a user."""
    find_event(session, event_id)
    require_granter(session, user, event_id)
    member = get_or_create_user(session, body.email)
    role = Role(body.role)
    exists = session.scalar(sa.select(EventRole.id).where(
        EventRole.event_id == event_id, EventRole.user_id == member.id, EventRole.role == role))
    if exists is not None:
        raise Conflict(f"{member.email} is already {role.value} of this event", pointer="/data/email")
    grant = EventRole(event_id=event_id, user_id=member.id, role=role)
    session.add(grant)
    session.commit()
    return RolePublic(id=grant.id, event=event_id, email=member.email, role=role.value)


@router.get("/{event_id}/orders", response_model=EventOrders)
@closes_session
def event_orders(
    event_id: EventId,
    found: EventLookup,
    session: DbSession,
    status: Annotated[OrderStatus | None, Query(description="only orders in this status")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
) -> EventOrders:
    """The event's orders with their email deliveries, for co-organizers (the order page's data)."""
    if not found.runs_event:  # before the lookup: outsiders learn nothing, not even 404
        raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/event")
    event = find_event(session, event_id)
    listed = list_event_orders(session, event_id, status=status, page=page, per_page=per_page)
    return EventOrders.model_validate({
        "event": {"id": event.id, "name": event.name, "currency": event.currency},
        "orders": listed.orders, "page": page, "per_page": per_page, "total": listed.total,
    })
