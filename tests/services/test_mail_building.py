"""Message building, SMTP URLs and failure classification: pure logic, no server."""

from __future__ import annotations

import base64
import random
import re
import smtplib
import string
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.policy import compat32
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from services import messages
from services.messages import Attachment, Mail, build_message, checked_address, wire_message
from services.smtp import DeliveryError, SmtpConfig, classify, message_bytes, parse_smtp_url

WIRE = compat32.clone(linesep="\r\n")


def mail(**changes: object) -> Mail:
    values: dict[str, object] = {
        "kind": "confirmation-buyer", "identifier": "abc123", "sender": "tickets@example.org",
        "recipient": "buyer@example.org", "subject": "Your order", "text": "Hello Eve", "html": "<p>Hello Eve</p>",
        "message_id": "<1@example.org>",
    }
    values.update(changes)
    return Mail(**values)  # type: ignore[arg-type]


def wire(m: Mail) -> object:
    data = message_bytes(build_message(m))
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    return message_from_bytes(data, policy=policy.default)


def test_headers_and_multipart_alternative_with_attachments() -> None:
    sent = wire(mail(attachments=(Attachment("tickets.pdf", b"%PDF-1.7"), Attachment("event.ics", b"BEGIN", "text",
                                                                                       "calendar"))))
    assert sent["X-Order-Identifier"] == "abc123" and sent["X-Email-Kind"] == "confirmation-buyer"  # type: ignore[index]
    assert sent["Message-ID"] == "<1@example.org>" and sent["To"] == "buyer@example.org"  # type: ignore[index]
    assert sent.get_content_type() == "multipart/mixed"  # type: ignore[attr-defined]
    assert [p.get_content_type() for p in sent.walk()] == [  # type: ignore[attr-defined]
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf", "text/calendar"]
    assert [p.get_filename() for p in sent.iter_attachments()] == ["tickets.pdf", "event.ics"]  # type: ignore[attr-defined]


def test_without_attachments_the_message_is_multipart_alternative() -> None:
    assert wire(mail()).get_content_type() == "multipart/alternative"  # type: ignore[attr-defined]


def test_hostile_values_add_no_header() -> None:
    sent = wire(mail(subject="Order for Eve\r\nBcc: x@evil.example", identifier="abc\nBcc: y@evil.example",
                     text="Eve\r\nBcc: x@evil.example", html="<p>Eve\r\nBcc: x@evil.example</p>"))
    assert sent["Bcc"] is None  # type: ignore[index]
    assert sent["Subject"] == "Order for Eve Bcc: x@evil.example"  # type: ignore[index]
    assert sent["X-Order-Identifier"] == "abc Bcc: y@evil.example"  # type: ignore[index]


@pytest.mark.parametrize("address", ["a@b.org\r\nBcc: x@evil", "a@b.org, c@d.org", "Eve <a@b.org>", "nobody", ""])
def test_recipient_must_be_one_plain_address(address: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        checked_address(address)
    assert caught.value.temporary is False


def test_a_new_message_id_names_the_sender_domain() -> None:
    assert str(build_message(mail(message_id=None))["Message-ID"]).endswith("@example.org>")


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


def test_non_ascii_headers_are_encoded_and_read_back() -> None:
    sent = wire(mail(subject="Zoë’s order – Köln " * 6))
    assert sent["Subject"] == ("Zoë’s order – Köln " * 6).strip()  # type: ignore[index]


def test_the_wire_form_is_the_standard_generators_with_crlf_line_ends() -> None:
    files = (Attachment("tickets.pdf", bytes(range(256)) * 300),
             Attachment("event.ics", b"BEGIN:VCALENDAR\n", "text", "calendar"))
    message = build_message(mail(text="line one\nline two\r\nline three", attachments=files))
    data = message_bytes(message)
    assert data == message.as_bytes(policy=compat32.clone(linesep="\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")


@pytest.mark.parametrize("attachments", [(), (Attachment("tickets.pdf", bytes(range(256)) * 300),
                                              Attachment("event.ics", b"BEGIN:VCALENDAR\n", "text", "calendar"))])
def test_the_direct_wire_form_is_the_standard_one_but_for_boundaries(attachments: tuple[Attachment, ...]) -> None:
    m = mail(subject="Zoë’s order – Köln " * 6, text="line one\nline two ë", attachments=attachments)

    def same(data: bytes) -> bytes:  # boundaries are random; the two may straddle a second
        return re.sub(rb"={15}\d{19}==", b"BOUNDARY", re.sub(rb"\r\nDate: [^\r]+", b"", data))

    outgoing = wire_message(m)
    assert (outgoing.sender, outgoing.recipient) == ("tickets@example.org", "buyer@example.org")
    assert same(outgoing.data) == same(message_bytes(build_message(m)))
    assert b"\n" not in outgoing.data.replace(b"\r\n", b"")


@pytest.mark.parametrize("number", [0, 1, 10**18, 9_223_372_036_854_775_806, 1234567890123456789])
@pytest.mark.parametrize("subtype", ["mixed", "alternative"])
def test_a_multipart_type_is_the_email_packages_folding_of_its_boundary(
        monkeypatch: pytest.MonkeyPatch, subtype: str, number: int) -> None:
    """The Content-Type of a multipart is cut from one folded template: the same bytes as folding it."""
    monkeypatch.setattr(messages.random, "randrange", lambda _: number)
    boundary = f"==============={number:019d}=="
    written = messages._multipart(subtype, [b"part"])
    expected = WIRE.fold_binary("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    assert written.startswith(expected + b"MIME-Version: 1.0\r\n\r\n--" + boundary.encode() + b"\r\npart\r\n")


def test_headers_are_folded_as_the_email_package_folds_them() -> None:
    """One-line headers are written directly; the bytes are compat32's either way."""
    rng = random.Random(12)
    alphabet = string.ascii_letters + string.digits + "   ;,.:<>@=\"'()-_/\tö’"
    values = ["", " ", "a  b ", 'attachment; filename="tickets.pdf"', "x" * 76, "x" * 70 + " y" * 5]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 100))) for _ in range(3000)]
    for name in ("To", "Subject", "X-Order-Identifier"):
        for value in values:
            assert messages._folded(name, value) == WIRE.fold_binary(name, value), (name, value)


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 1000, 57 * 100, 123_457])
def test_base64_lines_are_the_mime_encoders(size: int) -> None:
    content = random.Random(size).randbytes(size)
    assert messages._base64(content) == base64.encodebytes(content).replace(b"\n", b"\r\n")


def _calendar_by_icalendar(order: Any, dtstamp: datetime) -> bytes:
    """The whole calendar built and written by icalendar in one go, as event_ics did before."""
    event = order.event
    zone = ZoneInfo(event.timezone)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//ticketq//tickets//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(messages.vtimezone(event.timezone, event.starts_at.year, event.ends_at.year))
    entry = icalendar.Event()
    entry.add("uid", f"{order.identifier}@ticketq")
    entry.add("dtstamp", dtstamp)
    entry.add("dtstart", event.starts_at.astimezone(zone))
    entry.add("dtend", event.ends_at.astimezone(zone))
    entry.add("summary", event.name)
    if event.location:
        entry.add("location", event.location)
    entry.add("description", f"Order {order.identifier}")
    calendar.add_component(entry)
    return bytes(calendar.to_ical())


@pytest.mark.parametrize(("tz", "starts", "days", "location"), [
    ("Europe/Berlin", datetime(2029, 3, 25, 9, tzinfo=UTC), 0, "Berlin"),
    ("America/New_York", datetime(2029, 12, 31, 20, tzinfo=UTC), 2, ""),
    ("UTC", datetime(2030, 6, 1, 8, tzinfo=UTC), 400, "Zoë's café, a very long location " * 4),
    ("Asia/Kolkata", datetime(2029, 1, 1, 0, tzinfo=UTC), 1, "Mumbai"),
])
def test_event_ics_is_what_icalendar_writes_for_the_whole_calendar(
        monkeypatch: pytest.MonkeyPatch, tz: str, starts: datetime, days: int, location: str) -> None:
    stamp = datetime(2026, 12, 3, 13, 5, 7, tzinfo=UTC)
    monkeypatch.setattr(messages, "utcnow", lambda: stamp)
    event = SimpleNamespace(timezone=tz, starts_at=starts, ends_at=starts + timedelta(days=days, hours=3),
                            name="Zoë’s conference: " + "talks " * 12, location=location)
    order = SimpleNamespace(identifier="ab" * 16, event=event)
    for _ in range(2):  # cold and cached
        assert messages.event_ics(order) == _calendar_by_icalendar(order, stamp)  # type: ignore[arg-type]
