"""Composing an email: what each kind says (Jinja2 templates), its PDFs and event.ics, as an
`email.message.EmailMessage` written to its wire form by the `email` package."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any

from core.locales import DEFAULT
from core.settings import settings
from models.base import utcnow
from models.deliveries import DocumentKind, EmailDelivery, EmailKind
from models.orders import Order
from models.users import normalize_email
from services.calendar import event_ics as event_ics  # services/deliveries.py builds one per order
from services.i18n import translations
from services.mailheaders import POLICY
from services.presenters import order_context
from services.smtp import DeliveryError, Outgoing
from services.storage import DocumentKey
from services.templating import environment

# Kinds that carry the order's PDFs: they wait for the documents to be rendered.
WITH_DOCUMENTS = frozenset({EmailKind.CONFIRMATION_BUYER, EmailKind.CONFIRMATION_ATTENDEE,
                            EmailKind.PAYMENT_RECEIVED, EmailKind.CANCELLATION})
WITH_CALENDAR = frozenset({EmailKind.CONFIRMATION_BUYER, EmailKind.CONFIRMATION_ATTENDEE})
# Organizers' replies go to the buyer; everyone else's to the event's contact address.
TO_ORGANIZERS = frozenset({EmailKind.ORGANIZER_NOTIFICATION})
# Characters a file name must not carry on common systems, and line breaks.
_UNSAFE_NAME = str.maketrans({c: " " for c in '/\\:*?"<>|\r\n\t'})


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
    sender_name: str = ""  # the display name of From: the event
    reply_to: str | None = None
    language: str = ""  # Content-Language (RFC 3282): the locale the email is written in


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
    # An Address object, never a string to parse: the display name is quoted or encoded as a whole.
    message["From"] = Address(display_name=clean_header(mail.sender_name), addr_spec=_checked_sender(mail.sender))
    message["To"] = checked_address(mail.recipient)
    if mail.reply_to:
        with contextlib.suppress(DeliveryError):  # an odd reply address costs the header, never the email
            message["Reply-To"] = checked_address(mail.reply_to)
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
    if mail.language:  # last: set_content and add_attachment move or drop the Content-* headers before them
        message["Content-Language"] = clean_header(mail.language)
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


def file_name(*parts: str | None) -> str:
    """"PyCon 2027 - ticket 2 - Bea Family.pdf": what the file is, readable on any system."""
    words = [" ".join((p or "").translate(_UNSAFE_NAME).split())[:80] for p in parts]
    return " - ".join(w for w in words if w) + ".pdf"


def attachments_for(order: Order, delivery: EmailDelivery, documents: Mapping[DocumentKey, bytes],
                    context: Mapping[str, Any], calendar: bytes | None = None) -> tuple[Attachment, ...]:
    kind, event = delivery.kind, order.event.name
    _ = translations(context["locale"]).gettext
    found: list[Attachment] = []
    invoice, credit = context["invoice"], context["credit_note"]
    if kind is EmailKind.CONFIRMATION_BUYER:
        found.append(_pdf(documents, file_name(event, _("tickets")), DocumentKind.TICKETS))
    if kind is EmailKind.CONFIRMATION_ATTENDEE:
        found += [_pdf(documents, file_name(event, _("ticket %(number)s") % {"number": a["number"]}, a["name"]),
                       DocumentKind.ATTENDEE_TICKET, a["id"])
                  for a in context["attendees"] if normalize_email(a["email"]) == delivery.recipient]
    if invoice and kind in (EmailKind.CONFIRMATION_BUYER, EmailKind.PAYMENT_RECEIVED):
        found.append(_pdf(documents, file_name(event, _("invoice %(number)s") % invoice), DocumentKind.INVOICE))
    if credit and kind is EmailKind.CANCELLATION:
        found.append(_pdf(documents, file_name(event, _("credit note %(number)s") % credit),
                          DocumentKind.CREDIT_NOTE))
    if kind in WITH_CALENDAR:
        found.append(Attachment("event.ics", calendar or event_ics(order), "text", "calendar"))
    return tuple(found)


def subject_for(kind: EmailKind, batch: str, context: Mapping[str, Any]) -> str:
    """The subject from templates/email/subjects.jinja, so it is translated with the rest."""
    macros = environment(context["locale"]).get_template("email/subjects.jinja").module
    return str(macros.subject(kind.value, batch, context))  # type: ignore[attr-defined]


def compose(order: Order, delivery: EmailDelivery, message_id: str, documents: Mapping[DocumentKey, bytes],
            context: dict[str, Any] | None = None, calendar: bytes | None = None) -> Mail:
    """The whole email for one delivery row; raises DocumentsMissing when its PDFs are not among `documents`.

    `context` and `calendar` (event.ics) may be passed in when one order sends several emails. The
    buyer's and attendees' emails are in the order's locale, the organizers' in the event's."""
    locale = (order.event.locale if delivery.kind in TO_ORGANIZERS else order.locale) or DEFAULT
    context = dict(context if context and context["locale"] == locale else order_context(order, locale))
    attachments = attachments_for(order, delivery, documents, context, calendar)
    context["recipient"] = delivery.recipient
    context["own_tickets"] = [a for a in context["attendees"] if normalize_email(a["email"]) == delivery.recipient]
    context["batch"] = delivery.batch
    context["attachments"] = [a.filename for a in attachments]
    env = environment(locale)
    name = f"email/{delivery.kind.value}"
    reply_to = context["buyer"]["email"] if delivery.kind in TO_ORGANIZERS else context["seller"]["email"]
    return Mail(
        kind=delivery.kind.value,
        identifier=order.identifier,
        sender=settings.mail_from,
        recipient=delivery.recipient,
        subject=subject_for(delivery.kind, delivery.batch, context),
        text=env.get_template(f"{name}.txt").render(**context),
        html=env.get_template(f"{name}.html").render(**context),
        attachments=attachments,
        message_id=message_id,
        sender_name=order.event.name,
        reply_to=reply_to or None,
        language=locale,
    )
