"""Request and response bodies. Requests are strict (unknown fields refused) and bounded, so
no input reaches the database in a shape it would choke on (NUL bytes, huge numbers, years 1 or 9999)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from api.seller import SellerIn, SellerOut
from api.validation import iana_timezone, in_event_timezone, iso_4217, not_in_past, sane_year, supported_locale
from models.status import OrderStatus, PaymentMode

DB_INT_MAX = 2**31 - 1
# Pages beyond this hold nothing any event has; the bound keeps OFFSET far from 64-bit overflow.
MAX_PAGE = 1_000_000
MAX_TICKETS_PER_LINE = 100
MAX_LINES = 20

# Printable text only: PostgreSQL refuses NUL, and control characters have no place in names.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_PRINTABLE)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300, pattern=_PRINTABLE)]
Email = Annotated[EmailStr, StringConstraints(max_length=254)]
DbId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
LocaleTag = Annotated[str, StringConstraints(max_length=64), AfterValidator(supported_locale)]


# ISO 8601 with an offset, or without one: a wall-clock time in the event's timezone.
Timestamp = Annotated[datetime, AfterValidator(sane_year)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventCreate(SellerIn, Strict):
    name: Name
    timezone: Annotated[str, StringConstraints(max_length=64), AfterValidator(iana_timezone)] = Field(
        description="IANA name, e.g. Europe/Berlin")  # before the times: they are read in it
    starts_at: Timestamp = Field(description="Local time in `timezone`, or with that zone's offset (or UTC)")
    ends_at: Timestamp = Field(description="As starts_at; not in the past")
    location: Location | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), AfterValidator(iso_4217)] = Field(
        default="EUR", description="ISO 4217 code")
    locale: LocaleTag = Field(default="en", description="Organizers' language, the orders' default (GET /v1/locales)")

    @field_validator("starts_at", "ends_at")
    @classmethod
    def read_in_timezone(cls, value: datetime, info: ValidationInfo) -> datetime:
        return in_event_timezone(value, info)

    @field_validator("ends_at")
    @classmethod
    def ends_in_future(cls, value: datetime) -> datetime:
        return not_in_past(value)


class EventPublic(SellerOut):
    id: int
    name: str
    starts_at: datetime
    ends_at: datetime
    timezone: str
    location: str | None
    currency: str
    locale: str


class TicketCreate(Strict):
    name: Name
    price: Annotated[str, StringConstraints(pattern=r"^\d{1,7}(\.\d{1,2})?$")] = Field(
        description="Decimal string, e.g. \"25.00\"")
    quantity: Annotated[int, Field(ge=0, le=1_000_000)]


class TicketPublic(BaseModel):
    id: int
    event: int
    name: str
    price: str
    quantity: int


class RoleCreate(Strict):
    email: Email
    role: Literal["organizer", "coorganizer"]


class RolePublic(BaseModel):
    id: int
    event: int
    email: str
    role: str


class OrderLine(Strict):
    ticket: DbId
    quantity: Annotated[int, Field(ge=1, le=MAX_TICKETS_PER_LINE)]


class OrderCreate(Strict):
    event: DbId
    tickets: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]
    status: OrderStatus | None = Field(
        default=None, description="Co-organizers only: create the order directly in this status")
    locale: LocaleTag | None = Field(default=None, description="The buyer's language; default: the event's")


class PersonIn(Strict):
    name: Name
    email: Email


class OrderUpdate(Strict):
    """Either the buyer's form (payment_mode, buyer, attendees) or a co-organizer's `status`."""

    payment_mode: PaymentMode | None = None
    buyer: PersonIn | None = None
    attendees: Annotated[list[PersonIn], Field(max_length=MAX_LINES * MAX_TICKETS_PER_LINE)] | None = None
    status: OrderStatus | None = Field(default=None, description="Co-organizers: completed (paid) or cancelled")
    locale: LocaleTag | None = Field(default=None, description="While initializing or pending: the buyer's language")


class ResendData(Strict):
    order: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    # Accepted and ignored (contract): the limit is keyed on the authenticated user, never on this.
    user: Any = None


class ResendRequest(Strict):
    data: ResendData


class ResendAccepted(BaseModel):
    status: bool
    message: str


class PersonOut(BaseModel):
    name: str | None
    email: str | None


class AttendeeOut(BaseModel):
    id: int
    name: str | None
    email: str | None
    ticket: int
    ticket_name: str


class DocumentOut(BaseModel):
    kind: str
    attendee_id: int | None
    revision: int
    size: int
    created_at: datetime
    url: str | None


class EmailOut(BaseModel):
    kind: str
    recipient: str
    state: str
    batch: str
    attempts: int
    last_error: str | None
    requested_by: str | None
    sent_at: datetime | None


class HistoryOut(BaseModel):
    kind: str
    actor: str | None
    at: datetime
    detail: dict[str, Any]


class OrderPublic(BaseModel):
    identifier: str
    event: int
    status: OrderStatus
    color: str
    amount: str
    currency: str
    payment_mode: str | None
    locale: str
    expires_at: datetime | None
    buyer: PersonOut
    attendees: list[AttendeeOut]
    documents: list[DocumentOut]
    emails: list[EmailOut]
    history: list[HistoryOut]


class Health(BaseModel):
    status: str
    database: str
    redis: str
    version: str


def decimal_string(value: Decimal) -> str:
    return f"{value:.2f}"
