"""Message building, event.ics, SMTP URLs and failure classification: pure logic, no server."""

from __future__ import annotations

import random
import smtplib
import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from types import SimpleNamespace
from typing import cast
from zoneinfo import ZoneInfo

import icalendar
import pytest

from models import Event, EventRole, Order, Role, TicketType, User
from models.deliveries import DocumentKind, EmailDelivery, EmailKind
from models.orders import Attendee
from models.status import OrderStatus
from services import calendar as ics_module
from services.calendar import event_ics
from services.messages import (
    Attachment,
    DocumentsMissing,
    Mail,
    checked_address,
    compose,
    file_name,
    message_id_for,
    wire_message,
)
from services.smtp import DeliveryError, SmtpConfig, classify, parse_smtp_url


def mail(**changes: object) -> Mail:
    values: dict[str, object] = {
        "kind": "confirmation-buyer", "identifier": "abc123", "sender": "tickets@example.org",
        "recipient": "buyer@example.org", "subject": "Your order", "text": "Hello Eve", "html": "<p>Hello Eve</p>",
        "message_id": "<1@example.org>",
    }
    values.update(changes)
    return Mail(**values)  # type: ignore[arg-type]


def parsed(data: bytes) -> EmailMessage:
    """What a receiver reads; the wire form has CRLF line ends only and 7-bit data only."""
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    return cast(EmailMessage, message_from_bytes(data, policy=policy.default))


def wire(m: Mail) -> EmailMessage:
    return parsed(wire_message(m).data)


def test_headers_and_multipart_alternative_with_attachments() -> None:
    sent = wire(mail(attachments=(Attachment("tickets.pdf", b"%PDF-1.7"), Attachment("event.ics", b"BEGIN", "text",
                                                                                       "calendar"))))
    assert sent["X-Order-Identifier"] == "abc123" and sent["X-Email-Kind"] == "confirmation-buyer"
    assert sent["Message-ID"] == "<1@example.org>" and sent["To"] == "buyer@example.org"
    assert sent["From"] == "tickets@example.org" and sent["Date"].datetime.tzinfo is not None
    assert sent.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in sent.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf", "text/calendar"]
    assert [p.get_filename() for p in sent.iter_attachments()] == ["tickets.pdf", "event.ics"]
    assert [p.get_content() for p in sent.iter_attachments()] == [b"%PDF-1.7", "BEGIN"]


def test_without_attachments_the_message_is_multipart_alternative() -> None:
    sent = wire(mail())
    assert sent.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in sent.iter_parts()] == ["text/plain", "text/html"]
    assert list(sent.iter_attachments()) == []


def test_hostile_values_add_no_header() -> None:
    sent = wire(mail(subject="Order for Eve\r\nBcc: x@evil.example", identifier="abc\nBcc: y@evil.example",
                     text="Eve\r\nBcc: x@evil.example", html="<p>Eve\r\nBcc: x@evil.example</p>"))
    assert sent["Bcc"] is None and all(key.lower() != "bcc" for key in sent)
    assert sent["Subject"] == "Order for Eve Bcc: x@evil.example"
    assert sent["X-Order-Identifier"] == "abc Bcc: y@evil.example"
    body = sent.get_body(("plain",))  # the body keeps the text, line break and all
    assert body is not None and body.get_content().splitlines() == ["Eve", "Bcc: x@evil.example"]


@pytest.mark.parametrize("value", ["=?utf-8?q?a=0D=0ABcc:_x@evil.example?=",
                                   "x =?utf-8?b?YQ0KQmNjOiB4QGV2aWwuZXhhbXBsZQ==?= y"])
def test_text_that_reads_as_an_encoded_word_stays_literal_text(value: str) -> None:
    sent = wire(mail(subject=value, identifier=value))
    assert sent["Bcc"] is None and all(key.lower() != "bcc" for key in sent)
    assert (sent["Subject"], sent["X-Order-Identifier"]) == (value, value)


@pytest.mark.parametrize("address", ["a@b.org\r\nBcc: x@evil", "a@b.org, c@d.org", "Eve <a@b.org>", "nobody", ""])
def test_recipient_must_be_one_plain_address(address: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        checked_address(address)
    assert caught.value.temporary is False


def test_a_non_ascii_local_part_is_refused_and_a_non_ascii_domain_is_sent_in_its_idna_form() -> None:
    with pytest.raises(DeliveryError):
        checked_address("zoë@example.org")
    outgoing = wire_message(mail(recipient="zoe@bücher.example"))
    assert outgoing.recipient == "zoe@xn--bcher-kva.example"
    assert parsed(outgoing.data)["To"] == "zoe@xn--bcher-kva.example"


@pytest.mark.parametrize("sender", ["tickets@example.org\r\nBcc: x@evil", "Tickets <t@example.org>"])
def test_a_bad_sender_is_refused(sender: str) -> None:
    with pytest.raises(DeliveryError):
        wire_message(mail(sender=sender))


@pytest.mark.parametrize("name", ["PyCon DE 2027", "Zoë’s conference: Köln", "東京 カンファレンス " * 5,
                                  'Eve "the" <boss>, Bcc: x@evil.example', "a\r\nBcc: x@evil.example",
                                  "=?utf-8?q?a=0D=0ABcc:_x@evil.example?=", "مؤتمر الرياض"])
def test_the_sender_shows_the_event_by_name_and_nothing_else(name: str) -> None:
    outgoing = wire_message(mail(sender_name=name, reply_to="org@example.org"))
    sent, shown = parsed(outgoing.data), " ".join(name.split())
    assert sent["Bcc"] is None and all(key.lower() != "bcc" for key in sent)
    (sender,) = sent["From"].addresses
    assert sender.addr_spec == "tickets@example.org" and sent["Reply-To"] == "org@example.org"
    if name.isascii() and "=?" not in name:
        assert sender.display_name == shown
    else:  # encoded as a whole; read as RFC 2047 says (CPython's address parser adds a space between words)
        raw = message_from_bytes(outgoing.data, policy=policy.compat32)["From"]
        assert str(make_header(decode_header(raw))) == f"{shown} <tickets@example.org>"


@pytest.mark.parametrize("reply_to", ["a@b.org\r\nBcc: x@evil", "a@b.org, c@d.org", "nobody"])
def test_an_unusable_reply_address_costs_the_header_not_the_email(reply_to: str) -> None:
    sent = wire(mail(reply_to=reply_to))
    assert sent["Reply-To"] is None and sent["Bcc"] is None


def test_attachment_names_say_what_they_are_in_characters_any_system_takes() -> None:
    assert file_name("PyCon: 2027/Köln", "ticket 2", 'Eve "x"\r\n<y>') == "PyCon 2027 Köln - ticket 2 - Eve x y.pdf"
    assert file_name("東京", "ticket 1", None) == "東京 - ticket 1.pdf"
    assert len(file_name("x" * 500, "tickets")) == 80 + len(" - tickets.pdf")


def test_a_new_message_id_names_the_sender_domain() -> None:
    assert str(wire(mail(message_id=None))["Message-ID"]).endswith("@example.org>")


def test_every_try_of_one_email_carries_the_same_message_id() -> None:
    message_id = message_id_for("ab12", 7, "tickets@example.org")
    assert message_id == "<ticketq.ab12.7@example.org>"
    tries = [wire(mail(message_id=message_id_for("ab12", 7, "tickets@example.org"))) for _ in range(2)]
    assert [t["Message-ID"] for t in tries] == [message_id] * 2


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://127.0.0.1:2525", SmtpConfig("127.0.0.1", 2525)),
    ("smtp://mail.example.org", SmtpConfig("mail.example.org", 25)),
    ("smtp://u%40x:p%3Ass@mail.example.org:587?starttls=true",
     SmtpConfig("mail.example.org", 587, starttls=True, username="u@x", password="p:ss")),
    ("smtps://user:pw@mail.example.org", SmtpConfig("mail.example.org", 465, ssl=True, username="user", password="pw")),
])
def test_smtp_urls(url: str, expected: SmtpConfig) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.org", "smtp://", "mail.example.org:25"])
def test_unusable_smtp_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        parse_smtp_url(url)


@pytest.mark.parametrize(("exc", "temporary", "reply"), [
    (smtplib.SMTPDataError(451, b"4.3.0 try later"), True, "451 4.3.0 try later"),
    (smtplib.SMTPDataError(550, b"5.7.1 rejected"), False, "550 5.7.1 rejected"),
    (smtplib.SMTPRecipientsRefused({"a@b.org": (550, b"no such user")}), False, "550 no such user"),
    (smtplib.SMTPRecipientsRefused({"a@b.org": (452, b"mailbox full")}), True, "452 mailbox full"),
    (smtplib.SMTPSenderRefused(421, b"closing", "t@x"), True, "421 closing"),
    (ConnectionRefusedError(111, "Connection refused"), True, None),
    (TimeoutError("timed out"), True, None),
    (smtplib.SMTPServerDisconnected("gone"), True, None),
])
def test_failures_are_classified_by_reply_code(exc: Exception, temporary: bool, reply: str | None) -> None:
    error = classify(exc)
    assert error.temporary is temporary
    if reply is not None:
        assert error.reply == reply


@pytest.mark.parametrize("subject", ["Zoë’s order – Köln " * 6, "New order " + "ef" * 16 + " for PyCon – Köln",
                                     "注文 ef12 – 東京 カンファレンス " * 4, "طلب رقم 12 – مؤتمر الرياض " * 3])
def test_non_ascii_headers_are_encoded_and_read_back_with_every_space(subject: str) -> None:
    assert wire(mail(subject=subject))["Subject"] == subject.strip()


def test_any_subject_reads_back_as_its_one_line_form() -> None:
    rng = random.Random(12)
    alphabet = string.ascii_letters + string.digits + "   ;,.:<>@=\"'()-_/\t\r\nö’–中ع=?"
    for _ in range(300):
        subject = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        sent = wire(mail(subject=subject))
        assert sent["Subject"] == " ".join(subject.split()) and sent["Bcc"] is None, subject


def event(tz: str = "Europe/Berlin", starts: datetime = datetime(2029, 3, 25, 9, tzinfo=UTC), days: int = 0,
          location: str = "Berlin", name: str = "Zoë’s conference: " + "talks " * 12) -> Event:
    return Event(name=name, timezone=tz, starts_at=starts, ends_at=starts + timedelta(days=days, hours=3),
                 location=location, currency="EUR")


def read_ics(data: bytes) -> tuple[icalendar.Calendar, icalendar.Event]:
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    calendar = icalendar.Calendar.from_ical(data)
    (entry,) = calendar.walk("VEVENT")
    return calendar, entry


@pytest.mark.parametrize(("tz", "starts", "days", "location"), [
    ("Europe/Berlin", datetime(2029, 3, 25, 9, tzinfo=UTC), 0, "Berlin"),
    ("America/New_York", datetime(2029, 12, 31, 20, tzinfo=UTC), 2, ""),
    ("UTC", datetime(2030, 6, 1, 8, tzinfo=UTC), 400, "Zoë's café, a very long location " * 4),
    ("Asia/Kolkata", datetime(2029, 1, 1, 0, tzinfo=UTC), 1, "Mumbai"),
])
def test_event_ics_is_the_event_in_its_own_timezone(tz: str, starts: datetime, days: int, location: str) -> None:
    order = SimpleNamespace(identifier="ab" * 16, locale="en", event=event(tz, starts, days, location))
    for _ in range(2):  # the zone built, then taken from the cache
        calendar, entry = read_ics(event_ics(order))  # type: ignore[arg-type]
        assert (calendar["VERSION"], calendar["PRODID"], calendar["METHOD"]) == ("2.0", ics_module.PRODID, "PUBLISH")
        assert [z["TZID"] for z in calendar.walk("VTIMEZONE")] == [tz]
        assert "COMMENT" not in calendar.walk("VTIMEZONE")[0]  # nothing a calendar app would show as ours
        assert str(entry["DESCRIPTION"]) == "Order ABABABAB"
        assert str(entry["UID"]) == f"{'ab' * 16}@ticketq"
        assert str(entry["SUMMARY"]) == order.event.name
        assert str(entry.get("LOCATION", "")) == location
        start, end = entry.decoded("DTSTART"), entry.decoded("DTEND")
        assert (start, end) == (order.event.starts_at, order.event.ends_at)
        assert start.utcoffset() == starts.astimezone(ZoneInfo(tz)).utcoffset()
        if tz != "UTC":  # a UTC time is written with Z, the others name their zone
            assert entry["DTSTART"].params["TZID"] == tz


def test_the_cached_zone_is_not_changed_by_the_calendars_that_hold_it() -> None:
    order = SimpleNamespace(identifier="cd" * 16, locale="en", event=event())
    first = event_ics(order)  # type: ignore[arg-type]
    zone = ics_module.vtimezone("Europe/Berlin", 2029, 2029)
    before = zone.to_ical()
    second = event_ics(order)  # type: ignore[arg-type]
    assert zone.to_ical() == before
    assert first.count(b"BEGIN:VTIMEZONE") == second.count(b"BEGIN:VTIMEZONE") == 1


def confirmed() -> Order:
    """An order as the pipeline loads it, built in memory: compose reads no database."""
    owner = User(email="owner@example.org", name="Olga Owner")
    happening = event(name="PyCon – Köln")
    happening.roles = [EventRole(role=Role.OWNER, user=owner)]
    ticket = TicketType(name="Standard", price=Decimal("25.00"), quantity=100)
    people = [("Ada Buyer", "ada@example.org"), ("Bea Family", "family@example.org"),
              ("Cy Family", "family@example.org")]
    return Order(
        id=7, identifier="ef" * 16, status=OrderStatus.COMPLETED, payment_mode="bank", buyer_name="Zoë Buyer",
        buyer_email="ada@example.org", amount=Decimal("75.00"), currency="EUR",
        created_at=datetime(2029, 1, 2, tzinfo=UTC), event=happening,
        attendees=[Attendee(id=10 + n, position=n, name=name, email=address, secret=f"s{n}", ticket_type=ticket)
                   for n, (name, address) in enumerate(people)])


DOCUMENTS = {(DocumentKind.TICKETS, None): b"%PDF tickets", (DocumentKind.INVOICE, None): b"%PDF invoice",
             (DocumentKind.ATTENDEE_TICKET, 11): b"%PDF bea", (DocumentKind.ATTENDEE_TICKET, 12): b"%PDF cy"}


@pytest.mark.parametrize(("kind", "recipient", "files"), [
    (EmailKind.CONFIRMATION_BUYER, "ada@example.org",  # no invoice issued to this order (models/invoices.py)
     {"PyCon – Köln - tickets.pdf": b"%PDF tickets", "event.ics": None}),
    (EmailKind.CONFIRMATION_ATTENDEE, "family@example.org",
     {"PyCon – Köln - ticket 2 - Bea Family.pdf": b"%PDF bea", "PyCon – Köln - ticket 3 - Cy Family.pdf": b"%PDF cy",
      "event.ics": None}),
    (EmailKind.ORGANIZER_NOTIFICATION, "owner@example.org", {}),
    (EmailKind.CANCELLATION, "ada@example.org", {}),
])
def test_a_composed_email_reads_back_as_the_contract_says(kind: EmailKind, recipient: str,
                                                          files: dict[str, bytes | None]) -> None:
    order = confirmed()
    delivery = EmailDelivery(id=3, kind=kind, recipient=recipient, batch="confirmation")
    message_id = message_id_for(order.identifier, delivery.id, "tickets@example.org")
    outgoing = wire_message(compose(order, delivery, message_id, DOCUMENTS))
    assert (outgoing.sender, outgoing.recipient) == ("tickets@localhost", recipient)
    sent = parsed(outgoing.data)

    assert (sent["To"], sent["Message-ID"]) == (recipient, message_id)
    assert (sent["X-Order-Identifier"], sent["X-Email-Kind"]) == (order.identifier, kind.value)
    assert "PyCon – Köln" in sent["Subject"] and order.identifier not in sent["Subject"]
    assert sent["From"].addresses[0].display_name == "PyCon – Köln"
    # Organizers' replies reach the buyer; everyone else's the event's contact (here its owner).
    assert sent["Reply-To"] == ("ada@example.org" if kind is EmailKind.ORGANIZER_NOTIFICATION else "owner@example.org")
    assert sent.get_content_type() == ("multipart/mixed" if files else "multipart/alternative")
    alternative = next(p for p in sent.walk() if p.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    text, html = sent.get_body(("plain",)), sent.get_body(("html",))
    assert text is not None and html is not None and "PyCon – Köln" in text.get_content()
    assert "PyCon – Köln" in html.get_content()

    attached = {p.get_filename(): p for p in sent.iter_attachments()}
    assert set(attached) == set(files)
    for name, content in files.items():
        if content is not None:
            assert attached[name].get_content_type() == "application/pdf"
            assert attached[name].get_content() == content
    if "event.ics" in attached:
        ics = attached["event.ics"]
        assert (ics.get_content_type(), ics.get_content_charset()) == ("text/calendar", "utf-8")
        _, entry = read_ics(ics.get_payload(decode=True))
        assert str(entry["UID"]) == f"{order.identifier}@ticketq" and str(entry["SUMMARY"]) == "PyCon – Köln"
        assert entry["DTSTART"].params["TZID"] == "Europe/Berlin"
        assert entry.decoded("DTSTART") == order.event.starts_at


def test_a_composed_email_waits_for_its_pdfs() -> None:
    order = confirmed()
    delivery = EmailDelivery(id=3, kind=EmailKind.CONFIRMATION_ATTENDEE, recipient="family@example.org")
    with pytest.raises(DocumentsMissing):
        compose(order, delivery, "<1@example.org>", {k: v for k, v in DOCUMENTS.items() if k[1] != 12})
