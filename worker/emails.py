"""Who gets which email for an order, the delivery rows that record them, and each email's content."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import jinja2
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.base import utcnow
from models.deliveries import DeliveryState, DocumentKind, EmailDelivery, EmailKind
from models.events import organizer_emails
from models.orders import Order
from models.users import normalize_email
from ticketq.settings import settings
from worker.documents import template_env
from worker.mail import Attachment, Mail
from worker.presenters import buyer_of, order_context
from worker.storage import DocumentKey, absolute, content_fingerprint, document_name, expected_keys

CONFIRMATION_BATCH = "confirmation"
CANCELLATION_BATCH = "cancellation"
RESEND_PREFIX = "resend-"
# Kinds that carry the order's PDFs: they wait for the documents to be rendered.
WITH_DOCUMENTS = frozenset({EmailKind.CONFIRMATION_BUYER, EmailKind.CONFIRMATION_ATTENDEE})
UNSENT = (DeliveryState.QUEUED, DeliveryState.SENDING)

SUBJECTS = {
    EmailKind.CONFIRMATION_BUYER: "Your order {identifier} for {event}: tickets and invoice",
    EmailKind.CONFIRMATION_ATTENDEE: "Your ticket for {event}",
    EmailKind.ORGANIZER_NOTIFICATION: "New order {identifier} for {event}",
    EmailKind.CANCELLATION: "Order {identifier} for {event} was cancelled",
}


class DocumentsMissing(Exception):
    """The email needs PDFs of the order's current revision that are not stored yet."""


def confirmation_recipients(session: Session, order: Order, *, organizers: bool) -> list[tuple[EmailKind, str]]:
    """The buyer; each distinct attendee address other than the buyer's; each organizer address once."""
    buyer = normalize_email(buyer_of(order)[1])
    plan: list[tuple[EmailKind, str]] = [(EmailKind.CONFIRMATION_BUYER, buyer)] if buyer else []
    seen = {buyer}
    for attendee in order.attendees:
        address = normalize_email(attendee.email or "")
        if address and address not in seen:
            seen.add(address)
            plan.append((EmailKind.CONFIRMATION_ATTENDEE, address))
    if organizers:
        for address in dict.fromkeys(normalize_email(e) for e in organizer_emails(session, order.event_id)):
            plan.append((EmailKind.ORGANIZER_NOTIFICATION, address))
    return plan


def ensure_deliveries(
    session: Session, order: Order, batch: str, plan: list[tuple[EmailKind, str]], *, requested_by: str | None = None
) -> list[EmailDelivery]:
    """Insert-if-absent on (order, batch, kind, recipient): a job that runs twice records each email once."""
    if plan:
        now = utcnow()
        rows = [{"order_id": order.id, "batch": batch, "kind": kind, "recipient": recipient,
                 "state": DeliveryState.QUEUED, "attempts": 0, "requested_by": requested_by,
                 "created_at": now, "updated_at": now} for kind, recipient in plan]
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(EmailDelivery).values(rows).on_conflict_do_nothing())
    return batch_deliveries(session, order, batch)


def batch_deliveries(session: Session, order: Order, batch: str) -> list[EmailDelivery]:
    return list(session.scalars(
        sa.select(EmailDelivery).where(EmailDelivery.order_id == order.id, EmailDelivery.batch == batch)
        .order_by(EmailDelivery.id)
    ))


def next_resend_batch(session: Session, order: Order) -> str:
    batches = session.scalars(sa.select(EmailDelivery.batch).where(
        EmailDelivery.order_id == order.id, EmailDelivery.batch.like(f"{RESEND_PREFIX}%")).distinct())
    numbers = [int(b.removeprefix(RESEND_PREFIX)) for b in batches if b.removeprefix(RESEND_PREFIX).isdigit()]
    return f"{RESEND_PREFIX}{max(numbers, default=0) + 1}"


@lru_cache(maxsize=64)
def vtimezone(tzid: str, first_year: int, last_year: int) -> icalendar.Timezone:
    """The zone's transitions over the event's years, built once per process: the full 1970-2038
    table icalendar builds by default costs more than the rest of the email."""
    return icalendar.Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1), last_date=date(last_year + 1, 1, 1))


def event_ics(order: Order) -> bytes:
    """A calendar entry in the event's own timezone; the UID is stable per order so a resend updates it."""
    event = order.event
    zone = ZoneInfo(event.timezone)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//ticketq//tickets//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(vtimezone(event.timezone, event.starts_at.year, event.ends_at.year))
    entry = icalendar.Event()
    entry.add("uid", f"{order.identifier}@ticketq")
    entry.add("dtstamp", utcnow())
    entry.add("dtstart", event.starts_at.astimezone(zone))
    entry.add("dtend", event.ends_at.astimezone(zone))
    entry.add("summary", event.name)
    if event.location:
        entry.add("location", event.location)
    entry.add("description", f"Order {order.identifier}")
    calendar.add_component(entry)
    return bytes(calendar.to_ical())


def stored_documents(order: Order) -> dict[DocumentKey, bytes]:
    """The stored PDFs of the order's current content, read from disk; missing files are left out."""
    fingerprint = content_fingerprint(order)
    found: dict[DocumentKey, bytes] = {}
    for key in expected_keys(order):
        try:
            found[key] = absolute(document_name(order.identifier, key[0], key[1], fingerprint)).read_bytes()
        except FileNotFoundError:
            continue
    return found


def _pdf(documents: Mapping[DocumentKey, bytes], filename: str, kind: DocumentKind,
         attendee_id: int | None = None) -> Attachment:
    content = documents.get((kind, attendee_id))
    if content is None:
        raise DocumentsMissing(f"{kind.value} {attendee_id or ''}".strip())
    return Attachment(filename, content)


def attachments_for(order: Order, delivery: EmailDelivery, documents: Mapping[DocumentKey, bytes]
                    ) -> tuple[Attachment, ...]:
    if delivery.kind not in WITH_DOCUMENTS:
        return ()
    ics = Attachment("event.ics", event_ics(order), "text", "calendar")
    if delivery.kind is EmailKind.CONFIRMATION_BUYER:
        return (_pdf(documents, "tickets.pdf", DocumentKind.TICKETS),
                _pdf(documents, "invoice.pdf", DocumentKind.INVOICE), ics)
    own = [a for a in order.attendees if normalize_email(a.email or "") == delivery.recipient]
    return (*[_pdf(documents, f"ticket-{a.position + 1}.pdf", DocumentKind.ATTENDEE_TICKET, a.id) for a in own], ics)


@lru_cache(maxsize=1)
def email_templates() -> jinja2.Environment:
    """Jinja alone: an email needs no WeasyPrint renderer."""
    return template_env()


def compose(order: Order, delivery: EmailDelivery, message_id: str, documents: Mapping[DocumentKey, bytes],
            context: dict[str, Any] | None = None) -> Mail:
    """The whole email for one delivery row; raises DocumentsMissing when its PDFs are not among `documents`."""
    context = dict(context or order_context(order))
    attachments = attachments_for(order, delivery, documents)
    context["recipient"] = delivery.recipient
    context["own_tickets"] = [a for a in context["attendees"] if normalize_email(a["email"]) == delivery.recipient]
    env = email_templates()
    name = f"email/{delivery.kind.value}"
    return Mail(
        kind=delivery.kind.value,
        identifier=order.identifier,
        sender=settings.mail_from,
        recipient=delivery.recipient,
        subject=SUBJECTS[delivery.kind].format(identifier=order.identifier, event=order.event.name),
        text=env.get_template(f"{name}.txt").render(**context),
        html=env.get_template(f"{name}.html").render(**context),
        attachments=attachments,
        message_id=message_id,
    )
