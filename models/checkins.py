"""Door check-in: a ticket's secret (or the code printed under its QR code) admits its attendee once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow
from models.errors import Conflict, InvalidTransition, NotFound
from models.events import Event, TicketType
from models.history import record
from models.orders import CODE_ALPHABET, CODE_LENGTH, Attendee, Order
from models.status import ADMITTED, check_tickets_valid

UNKNOWN_TICKET = "Unknown ticket for this event"
# Letters people read for digits on paper, as Crockford's base32 maps them.
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


class CheckIn(Base):
    """A ticket used at the door. One row per ticket, ever: the unique attendee is what makes two
    concurrent scans of one code admit once."""

    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(primary_key=True)
    attendee_id: Mapped[int] = mapped_column(sa.ForeignKey("attendees.id", ondelete="CASCADE"), unique=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"), index=True)
    checked_in_by: Mapped[str | None] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class Admission:
    """What door staff see for an admitted ticket."""

    id: int
    event_id: int
    order: str
    attendee_id: int
    name: str | None
    email: str | None
    ticket_id: int
    ticket: str
    code: str | None
    checked_in_at: datetime
    checked_in_by: str | None


def format_code(code: str | None) -> str:
    """The code as printed: two groups of five, easier to read out than ten characters in a row."""
    if not code:
        return ""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def normalize_code(value: str) -> str | None:
    """What a person typed, as a stored code (any case, dashes or spaces, O for 0); None if it cannot be one."""
    code = "".join(value.split()).replace("-", "").upper().translate(_LOOKALIKES)
    if len(code) == CODE_LENGTH and all(c in CODE_ALPHABET for c in code):
        return code
    return None


def check_in(session: Session, event_id: int, secret: str, *, by: str | None,
             now: datetime | None = None) -> Admission:
    """Admit the ticket once: 404 unknown (or another event's), 410 void, 422 not issued, 409 used.

    The order row is read FOR SHARE, so a cancellation committing meanwhile either waits for this
    check-in or is seen by it; the insert-if-absent on the unique attendee settles two scans at once.
    """
    now = now or utcnow()
    code = normalize_code(secret)
    match = Attendee.secret == secret if code is None else sa.or_(Attendee.secret == secret, Attendee.code == code)
    row = session.execute(
        sa.select(Attendee.id, Attendee.name, Attendee.email, Attendee.code, Attendee.order_id,
                  Order.identifier, Order.status, TicketType.id.label("ticket_id"), TicketType.name.label("ticket"),
                  Event.timezone)
        .join(Order, Order.id == Attendee.order_id).join(TicketType, TicketType.id == Attendee.ticket_type_id)
        .join(Event, Event.id == Order.event_id)
        .where(match, Order.event_id == event_id)
        .limit(1).with_for_update(read=True, of=Order)
    ).first()
    if row is None:
        raise NotFound(UNKNOWN_TICKET, pointer="/data/secret")
    check_tickets_valid(row.status, pointer="/data/secret")
    if row.status not in ADMITTED:
        raise InvalidTransition(f"Ticket not issued: its order is {row.status.value}", pointer="/data/secret")
    inserted = _insert_if_absent(session, attendee_id=row.id, event_id=event_id, checked_in_by=by, created_at=now)
    if inserted is None:
        earlier = session.scalar(sa.select(CheckIn.created_at).where(CheckIn.attendee_id == row.id))
        assert earlier is not None
        local = earlier.astimezone(ZoneInfo(row.timezone))
        raise Conflict(f"Ticket already checked in at {local:%Y-%m-%d %H:%M:%S %Z}", pointer="/data/secret")
    record(session, row.order_id, "checked-in", actor=by, attendee=row.id, ticket=row.ticket,
           code=format_code(row.code))
    return Admission(id=inserted, event_id=event_id, order=row.identifier, attendee_id=row.id, name=row.name,
                     email=row.email, ticket_id=row.ticket_id, ticket=row.ticket, code=format_code(row.code) or None,
                     checked_in_at=now, checked_in_by=by)


def _insert_if_absent(session: Session, **values: Any) -> int | None:
    """The new check-in's id, or None when the ticket has one (ON CONFLICT is per dialect)."""
    insert: sa.Insert
    if session.get_bind().dialect.name == "postgresql":
        insert = postgresql.insert(CheckIn).values(**values).on_conflict_do_nothing(index_elements=["attendee_id"])
    else:
        insert = sqlite.insert(CheckIn).values(**values).on_conflict_do_nothing(index_elements=["attendee_id"])
    return session.scalar(insert.returning(CheckIn.id))
