"""Composing an email: what each kind says (Jinja2 templates), its PDFs and event.ics, as an
`email.message.EmailMessage` written to its wire form by the `email` package."""

from __future__ import annotations

import email.policy
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any

import jinja2

from core.settings import settings
from models.base import utcnow
from models.deliveries import DocumentKind, EmailDelivery, EmailKind
from models.orders import Order
from models.users import normalize_email
from services.calendar import event_ics as event_ics  # services/deliveries.py builds one per order
from services.presenters import order_context
from services.rendering import template_env
from services.smtp import DeliveryError, Outgoing
from services.storage import DocumentKey

# Kinds that carry the order's PDFs: they wait for the documents to be rendered.
WITH_DOCUMENTS = frozenset({EmailKind.CONFIRMATION_BUYER, EmailKind.CONFIRMATION_ATTENDEE})

SUBJECTS = {
    EmailKind.CONFIRMATION_BUYER: "Your order {identifier} for {event}: tickets and invoice",
    EmailKind.CONFIRMATION_ATTENDEE: "Your ticket for {event}",
    EmailKind.ORGANIZER_NOTIFICATION: "New order {identifier} for {event}",
    EmailKind.CANCELLATION: "Order {identifier} for {event} was cancelled",
}


class _Text(UnstructuredHeader, BaseHeader):
    """A header value taken literally and written by the email package's `Header` (RFC 2047).

    policy.default would decode anything in the value that looks like an encoded word (an event
    named "=?utf-8?q?=0D=0ABcc:_x@evil?=" became a raw Bcc line on Python 3.11), and its folder
    drops the space between two encoded words it puts on separate lines (CPython gh-144156)."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = None  # fold() below never reads it
        kwds["decoded"] = value

    def fold(self, *, policy: email.policy.Policy) -> str:
        # Encoded as a whole if anything in it could be read as non-ASCII or as an encoded word.
        charset = "us-ascii" if self.isascii() and "=?" not in self else "utf-8"
        value = Header(str(self), charset, header_name=self.name)
        folded = value.encode(linesep=policy.linesep, maxlinelen=policy.max_line_length)
        return f"{self.name}: {folded}{policy.linesep}"


class _UniqueText(_Text):
    max_count = 1


_HEADERS = HeaderRegistry(default_class=_Text)  # X-Order-Identifier, X-Email-Kind
# The Message-ID too, so it goes out exactly as recorded: the standard class cuts short one it cannot parse.
for _name in ("subject", "message-id"):
    _HEADERS.map_to_type(_name, _UniqueText)

# CRLF line ends and every part 7-bit clean: we do not ask the server for 8BITMIME, so UTF-8 text
# goes out quoted-printable or base64, and non-ASCII header text as RFC 2047 encoded words.
POLICY = email.policy.SMTP.clone(cte_type="7bit", header_factory=_HEADERS)


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


def clean_header(value: str) -> str:
    """One line, whatever the data: a name holding "\\r\\nBcc: x" must never become a header."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def checked_address(value: str) -> str:
    """A bare ASCII addr-spec (an internationalized domain in its IDNA form); anything with line
    breaks, several addresses or a non-ASCII local part is refused (a permanent failure)."""
    if any(c in value for c in "\r\n,;<>") or value.count("@") != 1:
        raise DeliveryError(f"invalid recipient address {value[:80]!r}", temporary=False)
    local, _, domain = value.strip().partition("@")
    try:
        domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
        return str(Address(addr_spec=f"{local}@{domain}"))
    except (ValueError, IndexError) as exc:  # UnicodeError is a ValueError
        raise DeliveryError(f"invalid recipient address {value[:80]!r}: {exc}", temporary=False) from None


@lru_cache(maxsize=16)
def _checked_sender(value: str) -> str:
    return checked_address(value)


def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2] or "localhost"
    return make_msgid(idstring="ticketq", domain=clean_header(domain))


def message_id_for(identifier: str, delivery_id: int, sender: str) -> str:
    """The Message-ID of one logical email: derived from its record, so every try carries the same
    one and a receiver can drop a repeat, even if the try that recorded it was lost."""
    domain = clean_header(sender.rpartition("@")[2] or "localhost")
    return f"<ticketq.{clean_header(identifier)}.{delivery_id}@{domain}>"


def build_message(mail: Mail) -> EmailMessage:
    """Text and HTML alternatives; with attachments the alternative part sits inside multipart/mixed."""
    message = EmailMessage(policy=POLICY)
    message["From"] = _checked_sender(mail.sender)
    message["To"] = checked_address(mail.recipient)
    message["Subject"] = clean_header(mail.subject)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = clean_header(mail.message_id or new_message_id(mail.sender))
    message["X-Order-Identifier"] = clean_header(mail.identifier)
    message["X-Email-Kind"] = clean_header(mail.kind)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    for item in mail.attachments:
        message.add_attachment(item.content, maintype=item.maintype, subtype=item.subtype,
                               filename=clean_header(item.filename),
                               params={"charset": "utf-8"} if item.maintype == "text" else None)
    return message


def wire_message(mail: Mail) -> Outgoing:
    """The message as SMTP sends it (the email package's generator, CRLF line ends), with its envelope."""
    message = build_message(mail)
    return Outgoing(_checked_sender(mail.sender), checked_address(mail.recipient), message.as_bytes(policy=POLICY))


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
