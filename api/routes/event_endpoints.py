"""Events, their ticket types and the roles of the people who run them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query

from api.deps import CurrentUser, DbSession, EventId, EventLookup, closes_session
from api.error_documents import BODY_ERRORS, READ_ERRORS, error_responses
from api.event_schemas import EventDetail, EventList, EventOrders
from api.permissions import COORGANIZER_REQUIRED, find_event, require_coorganizer, require_granter
from api.publish import commit_and_publish
from api.schemas import (
    MAX_PAGE,
    EventCreate,
    EventPublic,
    RoleCreate,
    RolePublic,
    TicketCreate,
    TicketPublic,
    decimal_string,
)
from api.seller import SELLER_FIELDS
from core.settings import settings
from models.errors import Conflict, Forbidden, InvalidInput
from models.event_listing import events_run_by, ticket_stock
from models.events import Event, EventRole, Role, TicketType
from models.listing import DEFAULT_PER_PAGE, MAX_PER_PAGE, list_event_orders
from models.status import OrderStatus
from models.users import get_or_create_user

router = APIRouter(prefix="/v1/events", tags=["events"])
Search = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                                      description="part of the buyer's name or email, or the start of the order code")]


ADMINS_ONLY = "Only admins may create events here (EVENT_CREATORS=admins)"


@router.post("", status_code=201, response_model=EventPublic, responses=error_responses(*BODY_ERRORS, 403))
@closes_session
def create_event(body: EventCreate, user: CurrentUser, session: DbSession) -> EventPublic:
    """Create an event; the caller becomes its owner. Times without an offset are read in `timezone`.
    Who may: anyone with a token, or only admins where EVENT_CREATORS=admins."""
    if settings.event_creators == "admins" and not user.is_admin:
        raise Forbidden(ADMINS_ONLY, pointer="")
    if body.ends_at < body.starts_at:
        raise InvalidInput("An event cannot end before it starts", pointer="/data/ends_at")
    tax_rate = Decimal(body.tax_rate)
    if tax_rate > 0 and not body.seller_vat_id:  # EN 16931 BR-S-02: an invoice charging VAT names the VAT ID
        raise InvalidInput("A tax rate above 0 needs the seller's VAT ID", pointer="/data/seller_vat_id")
    event = Event(name=body.name, starts_at=body.starts_at, ends_at=body.ends_at, timezone=body.timezone,
                  location=body.location, currency=body.currency, locale=body.locale, tax_rate=tax_rate,
                  **body.model_dump(include=SELLER_FIELDS))
    session.add(event)
    session.flush()
    session.add(EventRole(event_id=event.id, user_id=user.id, role=Role.OWNER))
    commit_and_publish(session)  # only flushes while an Idempotency-Key answer is to be stored with it
    session.refresh(event)  # answer with what was stored (UTC), not with what was sent
    return EventPublic.model_validate(event, from_attributes=True)


@router.get("", response_model=EventList, responses=error_responses(*READ_ERRORS, 422))
@closes_session
def list_events(
    user: CurrentUser, session: DbSession,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
) -> EventList:
    """The events the caller runs (owner, organizer or coorganizer; an admin: every event)."""
    found = events_run_by(session, user, page=page, per_page=per_page)
    return EventList.model_validate({
        "events": [{**EventPublic.model_validate(e, from_attributes=True).model_dump(), "roles": roles}
                   for e, roles in found.events],
        "page": page, "per_page": per_page, "total": found.total})


@router.get("/{event_id}", response_model=EventDetail, responses=error_responses(*READ_ERRORS, 403, 404, 422))
@closes_session
def read_event(event_id: EventId, found: EventLookup, session: DbSession) -> EventDetail:
    """The event with its ticket types: how many are sold, held by open orders and left (co-organizers)."""
    if not found.runs_event:  # before the lookup: outsiders learn nothing, not even 404
        raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/event")
    event = find_event(session, event_id)
    roles = session.scalars(sa.select(EventRole.role).where(
        EventRole.event_id == event_id, EventRole.user_id == found.caller.id).order_by(EventRole.id)).all()
    return EventDetail.model_validate({
        **EventPublic.model_validate(event, from_attributes=True).model_dump(),
        "roles": [role.value for role in roles], "tickets": ticket_stock(session, event)})


@router.post("/{event_id}/tickets", status_code=201, response_model=TicketPublic,
             responses=error_responses(*BODY_ERRORS, 403, 404))
@closes_session
def create_ticket_type(event_id: EventId, body: TicketCreate, user: CurrentUser, session: DbSession) -> TicketPublic:
    """Add a ticket type (co-organizers)."""
    find_event(session, event_id)
    require_coorganizer(session, user, event_id)
    ticket = TicketType(event_id=event_id, name=body.name, price=Decimal(body.price), quantity=body.quantity)
    session.add(ticket)
    commit_and_publish(session)  # only flushes while an Idempotency-Key answer is to be stored with it
    return TicketPublic(id=ticket.id, event=event_id, name=ticket.name, price=decimal_string(ticket.price),
                        quantity=ticket.quantity)


@router.post("/{event_id}/roles", status_code=201, response_model=RolePublic,
             responses=error_responses(*BODY_ERRORS, 403, 404, 409))
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
    commit_and_publish(session)  # only flushes while an Idempotency-Key answer is to be stored with it
    return RolePublic(id=grant.id, event=event_id, email=member.email, role=role.value)


@router.get("/{event_id}/orders", response_model=EventOrders,
            responses=error_responses(*READ_ERRORS, 403, 404, 422))
@closes_session
def event_orders(
    event_id: EventId,
    found: EventLookup,
    session: DbSession,
    status: Annotated[OrderStatus | None, Query(description="only orders in this status")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
    q: Search = None,
) -> EventOrders:
    """The event's orders with their email deliveries, for co-organizers (the order page's data)."""
    if not found.runs_event:  # before the lookup: outsiders learn nothing, not even 404
        raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/event")
    event = find_event(session, event_id)
    listed = list_event_orders(session, event_id, status=status, page=page, per_page=per_page, search=q)
    return EventOrders.model_validate({
        "event": {"id": event.id, "name": event.name, "currency": event.currency, "timezone": event.timezone},
        "orders": listed.orders, "page": page, "per_page": per_page, "total": listed.total,
    })
