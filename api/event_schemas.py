"""Bodies of the event reads: the events a caller runs, one event with its ticket stock, and a page
of an event's orders (the organizer page's data)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from api.schemas import EventPublic, PersonOut


class EventSummary(EventPublic):
    roles: list[str] = Field(description="The caller's roles on the event (empty for an admin without one)")


class EventList(BaseModel):
    """One page of the events the caller runs (an admin: every event), latest start first."""

    events: list[EventSummary]
    page: int
    per_page: int
    total: int


class TicketStock(BaseModel):
    id: int
    name: str
    price: str
    quantity: int
    sold: int = Field(description="In placed or completed orders")
    held: int = Field(description="In initializing or pending orders that have not expired")
    left: int = Field(description="quantity - sold - held: what a new order can still get")


class EventDetail(EventSummary):
    tickets: list[TicketStock]


class DeliveryRow(BaseModel):
    batch: str
    kind: str
    recipient: str
    state: str
    attempts: int
    last_error: str | None
    updated_at: datetime | None


class OrderRow(BaseModel):
    identifier: str
    status: str
    color: str
    resendable: bool
    amount: str
    currency: str
    payment_mode: str | None
    buyer: PersonOut
    created_at: datetime
    emails: list[DeliveryRow]


class EventRef(BaseModel):
    id: int
    name: str
    currency: str
    timezone: str


class EventOrders(BaseModel):
    """One page of an event's orders (the organizer order page's data)."""

    event: EventRef
    orders: list[OrderRow]
    page: int
    per_page: int
    total: int
