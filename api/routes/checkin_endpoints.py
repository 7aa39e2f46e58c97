"""Check-in at the door: an event's co-organizers admit each ticket once by its QR code or printed code."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints

from api.deps import DbSession, EventId, EventLookup, closes_session
from api.permissions import COORGANIZER_REQUIRED, find_event
from api.schemas import Strict
from models.checkins import check_in
from models.errors import Forbidden

router = APIRouter(prefix="/v1/events", tags=["checkins"])
# The bodies live here, beside their one route, rather than in api/schemas.py (shared, near its size limit).


class CheckinCreate(Strict):
    secret: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                             pattern=r"^[^\x00-\x1f\x7f]*$")] = Field(
        description="The QR code's content, or the ticket code printed under it")


class CheckinAttendee(BaseModel):
    id: int
    name: str | None
    email: str | None


class CheckinTicket(BaseModel):
    id: int
    name: str
    code: str | None


class CheckinPublic(BaseModel):
    """An admitted ticket: who comes in, on which ticket type."""

    id: int
    event: int
    order: str
    attendee: CheckinAttendee
    ticket: CheckinTicket
    checked_in_at: datetime
    checked_in_by: str | None


@router.post("/{event_id}/checkins", status_code=201, response_model=CheckinPublic)
@closes_session
def create_checkin(event_id: EventId, body: CheckinCreate, found: EventLookup, session: DbSession) -> CheckinPublic:
    """Admit a ticket: 201 the first time, 409 once used, 410 if its order was cancelled or expired,
    404 for a code this event never issued (co-organizers of the event)."""
    if not found.runs_event:  # before any lookup: door staff of another event learn nothing of this one
        raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/event")
    find_event(session, event_id)
    admitted = check_in(session, event_id, body.secret, by=found.caller.email)
    session.commit()
    return CheckinPublic(
        id=admitted.id, event=admitted.event_id, order=admitted.order,
        attendee=CheckinAttendee(id=admitted.attendee_id, name=admitted.name, email=admitted.email),
        ticket=CheckinTicket(id=admitted.ticket_id, name=admitted.ticket, code=admitted.code),
        checked_in_at=admitted.checked_in_at, checked_in_by=admitted.checked_in_by,
    )
