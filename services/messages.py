"""Building a message: what each email says (Jinja2 templates, its PDFs, event.ics) as a MIME message."""

from __future__ import annotations

import binascii
import email.utils
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from email import encoders
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import jinja2

from core.settings import settings
from models.base import utcnow
from models.deliveries import DocumentKind, EmailDelivery, EmailKind
from models.orders import Order
from models.users import normalize_email
from services.presenters import order_context
from services.rendering import template_env
from services.smtp import WIRE_POLICY, DeliveryError, Outgoing
from services.storage import DocumentKey

# Kinds that carry the order's PDFs: they wait for the documents to be rendered.
WITH_DOCUMENTS = frozenset({EmailKind.CONFIRMATION_BUYER, EmailKind.CONFIRMATION_ATTENDEE})

SUBJECTS = {
    EmailKind.CONFIRMATION_BUYER: "Your order {identifier} for {event}: tickets and invoice",
    EmailKind.CONFIRMATION_ATTENDEE: "Your ticket for {event}",
    EmailKind.ORGANIZER_NOTIFICATION: "New order {identifier} for {event}",
    EmailKind.CANCELLATION: "Order {identifier} for {event} was cancelled",
}


class DocumentsMissing(Exception):
    """The email needs PDFs of the order's current revision that are not stored yet."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"

@dataclass(frozen=True)
class Mail:
    kind: str
    identifier: str
    sender: str
    recipient: str
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

def clean_header(value: str) -> str:
    """One line, whatever the data: a name holding "\\r\\nBcc: x" must never become a header."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())

def checked_address(value: str) -> str:
    """A bare addr-spec; anything with line breaks or several addresses is refused (a permanent failure)."""
    if any(c in value for c in "\r\n,;<>") or value.count("@") != 1:
        raise DeliveryError(f"invalid recipient address {value[:80]!r}", temporary=False)
    try:
        return str(Address(addr_spec=value.strip()))
    except (ValueError, IndexError) as exc:
        raise DeliveryError(f"invalid recipient address {value[:80]!r}: {exc}", temporary=False) from None

def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2] or "localhost"
    return make_msgid(idstring="ticketq", domain=clean_header(domain))

def message_id_for(identifier: str, delivery_id: int, sender: str) -> str:
    """The Message-ID of one logical email: derived from its record, so every try carries the same
    one and a receiver can drop a repeat, even if the try that recorded it was lost."""
    domain = clean_header(sender.rpartition("@")[2] or "localhost")
    return f"<ticketq.{clean_header(identifier)}.{delivery_id}@{domain}>"

def _header(value: str) -> str | Header:
    value = clean_header(value)
    return value if value.isascii() else Header(value, "utf-8")

def build_message(mail: Mail) -> Message:
    """Text and HTML alternatives; with attachments the alternative part sits inside multipart/mixed.

    Built with the classic MIME classes: several times cheaper than EmailMessage's header registry,
    which counts when every confirmed order sends three of these.
    """
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(mail.text, "plain", "utf-8"))
    alternative.attach(MIMEText(mail.html, "html", "utf-8"))
    message = alternative
    if mail.attachments:
        message = MIMEMultipart("mixed")
        message.attach(alternative)
        for item in mail.attachments:
            part = MIMEBase(item.maintype, item.subtype)
            part.set_payload(item.content)
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=clean_header(item.filename))
            message.attach(part)
    message["From"] = checked_address(mail.sender)
    message["To"] = checked_address(mail.recipient)
    headers = {
        "Subject": mail.subject,
        "Date": format_datetime(utcnow()),
        "Message-ID": mail.message_id or new_message_id(mail.sender),
        "X-Order-Identifier": mail.identifier,
        "X-Email-Kind": mail.kind,
        **mail.extra_headers,
    }
    for name, value in headers.items():
        message[clean_header(name)] = _header(value)  # type: ignore[assignment]  # a Header is allowed here
    return message


_CRLF = b"\r\n"


def _folded(name: str, value: str | Header) -> bytes:
    if isinstance(value, str) and len(name) + 2 + len(value) <= _MAX_LINE and value.isascii() and value.isprintable():
        # What compat32 writes for a header that fits on one line (tests/worker/test_mail_building.py
        # compares): most of a message's headers, without the email package's Header machinery.
        return f"{name}: {value}\r\n".encode()
    return WIRE_POLICY.fold_binary(name, value)  # type: ignore[arg-type]  # compat32 folds a Header too


_MAX_LINE = 78  # compat32's max_line_length


@lru_cache(maxsize=16)
def _checked_sender(value: str) -> str:
    return checked_address(value)


# A boundary is always "=" * 15 + 19 digits + "==": one folded with a placeholder of that shape
# (digits fold like digits) is the template every multipart's Content-Type is cut from.
_BOUNDARY_PLACEHOLDER = "0" * 19


@lru_cache(maxsize=4)
def _multipart_type(subtype: str) -> tuple[bytes, bytes]:
    folded = _folded("Content-Type", f'multipart/{subtype}; boundary="==============={_BOUNDARY_PLACEHOLDER}=="')
    before, placeholder, after = folded.partition(_BOUNDARY_PLACEHOLDER.encode())
    assert placeholder, folded
    return before, after


def _base64(content: bytes) -> bytes:
    """Lines of 76 characters, as the MIME encoders write them (base64.encodebytes with CRLF, in one
    pass: encodebytes encodes 57 bytes per call)."""
    encoded = binascii.b2a_base64(content, newline=False)
    if not encoded:
        return b""
    return _CRLF.join([encoded[i:i + 76] for i in range(0, len(encoded), 76)]) + _CRLF


def _part(content_type: str, content: bytes, disposition: str | None = None) -> bytes:
    head = _folded("Content-Type", content_type) + b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n"
    if disposition:
        head += _folded("Content-Disposition", disposition)
    return head + _CRLF + _base64(content)


def _multipart(subtype: str, parts: list[bytes], head: bytes = b"") -> bytes:
    # Every part is base64, which never holds a run of '=' like the boundary: no need to look for it.
    digits = f"{random.randrange(sys.maxsize):019d}"
    delimiter = f"--==============={digits}==".encode()
    body = b"".join(delimiter + _CRLF + part + _CRLF for part in parts)
    before, after = _multipart_type(subtype)
    return (before + digits.encode() + after + b"MIME-Version: 1.0\r\n"
            + head + _CRLF + body + delimiter + b"--" + _CRLF)


def _disposition(filename: str) -> str:
    filename = clean_header(filename)
    if filename.isascii():
        return f'attachment; filename="{email.utils.quote(filename)}"'
    part = Message()
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return str(part["Content-Disposition"])


def wire_message(mail: Mail) -> Outgoing:
    """The same message as `build_message`, written straight to its wire form.

    Same structure, headers and encodings as the standard classes and generator produce (see
    tests/worker/test_mail_building.py), without building and walking a tree of Message objects,
    which was most of the CPU a confirmation spent on its emails apart from the SMTP dialogue.
    """
    sender, recipient = _checked_sender(mail.sender), checked_address(mail.recipient)
    headers = {
        "From": sender, "To": recipient, "Subject": mail.subject, "Date": format_datetime(utcnow()),
        "Message-ID": mail.message_id or new_message_id(mail.sender),
        "X-Order-Identifier": mail.identifier, "X-Email-Kind": mail.kind, **mail.extra_headers,
    }
    head = b"".join(_folded(clean_header(name), _header(value)) for name, value in headers.items())
    alternative = [_part('text/plain; charset="utf-8"', mail.text.encode()),
                   _part('text/html; charset="utf-8"', mail.html.encode())]
    if not mail.attachments:
        return Outgoing(sender, recipient, _multipart("alternative", alternative, head))
    parts = [_multipart("alternative", alternative)] + [
        _part(f"{a.maintype}/{a.subtype}", a.content, _disposition(a.filename)) for a in mail.attachments]
    return Outgoing(sender, recipient, _multipart("mixed", parts, head))


@lru_cache(maxsize=64)
def vtimezone(tzid: str, first_year: int, last_year: int) -> icalendar.Timezone:
    """The zone's transitions over the event's years, built once per process: the full 1970-2038
    table icalendar builds by default costs more than the rest of the email."""
    return icalendar.Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1), last_date=date(last_year + 1, 1, 1))


@lru_cache(maxsize=64)
def _vtimezone_ical(tzid: str, first_year: int, last_year: int) -> bytes:
    return bytes(vtimezone(tzid, first_year, last_year).to_ical())


_CALENDAR_END = b"END:VCALENDAR\r\n"


@lru_cache(maxsize=1)
def _calendar_head() -> bytes:
    """The calendar's own lines (the same for every order), as icalendar writes them."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//ticketq//tickets//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    ical = bytes(calendar.to_ical())
    assert ical.endswith(_CALENDAR_END)
    return ical.removesuffix(_CALENDAR_END)


def event_ics(order: Order) -> bytes:
    """A calendar entry in the event's own timezone; the UID is stable per order so a resend updates it.

    What icalendar writes for the calendar holding the zone and the entry (each component's lines in
    turn, tests/worker/test_mail_building.py compares): the calendar's lines and the zone's, the same
    for every order of the event, are written once per process."""
    event = order.event
    zone = ZoneInfo(event.timezone)
    entry = icalendar.Event()
    entry.add("uid", f"{order.identifier}@ticketq")
    entry.add("dtstamp", utcnow())
    entry.add("dtstart", event.starts_at.astimezone(zone))
    entry.add("dtend", event.ends_at.astimezone(zone))
    entry.add("summary", event.name)
    if event.location:
        entry.add("location", event.location)
    entry.add("description", f"Order {order.identifier}")
    return (_calendar_head() + _vtimezone_ical(event.timezone, event.starts_at.year, event.ends_at.year)
            + bytes(entry.to_ical()) + _CALENDAR_END)


def _pdf(documents: Mapping[DocumentKey, bytes], filename: str, kind: DocumentKind,
         attendee_id: int | None = None) -> Attachment:
    content = documents.get((kind, attendee_id))
    if content is None:
        raise DocumentsMissing(f"{kind.value} {attendee_id or ''}".strip())
    return Attachment(filename, content)


def attachments_for(order: Order, delivery: EmailDelivery, documents: Mapping[DocumentKey, bytes],
                    calendar: bytes | None = None) -> tuple[Attachment, ...]:
    if delivery.kind not in WITH_DOCUMENTS:
        return ()
    ics = Attachment("event.ics", calendar or event_ics(order), "text", "calendar")
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
            context: dict[str, Any] | None = None, calendar: bytes | None = None) -> Mail:
    """The whole email for one delivery row; raises DocumentsMissing when its PDFs are not among `documents`.

    `context` and `calendar` (event.ics) may be passed in when one order sends several emails."""
    context = dict(context or order_context(order))
    attachments = attachments_for(order, delivery, documents, calendar)
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
