"""Hostile names through the whole pipeline: literal text in PDFs and emails, no extra header, nothing fetched."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CANCELLATION_TASK, CONFIRM_TASK
from models.deliveries import DeliveryState
from models.events import Role
from models.status import OrderStatus
from models.transitions import change_status, load_order
from tests.backends import CeleryWorker
from tests.services.hostile import counting_server, hostile_names
from tests.tasks.confirm_helpers import BUYER, SHARED, attachments, by_kind, confirmed_order, pdf_text, wait_settled
from ticketq.embedded import SmtpSink
from worker import app


def flat(text: str) -> str:
    return " ".join(text.split())


def bare(text: str) -> str:
    return "".join(text.split())


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def test_hostile_names_come_out_as_literal_text(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    with counting_server() as server:
        names = hostile_names(server.url)
        people = [(names[0], BUYER)] + [(n, SHARED) for n in names[1:]]
        identifier = confirmed_order(db, people, buyer_name=names[5], event_name=names[4])
        app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
        rows = wait_settled(db, identifier, 3)
        assert server.paths == []

    assert [r.state for r in rows] == [DeliveryState.SENT] * 3
    mails = by_kind(smtp.messages)
    assert len(smtp.messages) == 3
    for message in smtp.messages:
        assert message["Bcc"] is None and "evil" not in str(message["To"])
        assert all(key.lower() != "bcc" for key in message)
    buyer = mails[("confirmation-buyer", BUYER)]
    assert flat(names[4]) in str(buyer["Subject"])
    text, html = body(buyer, "plain"), body(buyer, "html")
    assert names[0] in text and "{{ 7*7 }}" in text
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html and '<img src="file' not in html
    assert "<link" not in html and "<style>@import" not in html

    # A long name wraps wherever the font's widths put it, even inside a word: compare without whitespace.
    files = attachments(buyer)
    tickets = bare(pdf_text(next(pdf for name, pdf in files.items() if name.endswith(" - tickets.pdf"))))
    for name in names:
        assert bare(name) in tickets
    family = attachments(mails[("confirmation-attendee", SHARED)])
    # Names carry the event and the attendee, never a path, a quote or a line break.
    assert all(not set(name) & set('/\\:*?"<>|\r\n') for name in [*files, *family])
    numbered = {int(name.split(" - ticket ")[1].split(" ")[0]): name for name in family if " - ticket " in name}
    assert set(numbered) == set(range(2, 7)) and "event.ics" in family and len(family) == 6
    assert bare(names[3]) in bare(pdf_text(family[numbered[4]]))


def unfolded_lines(ics: bytes) -> list[str]:
    """An iCalendar file's logical lines (RFC 5545 3.1: a CRLF followed by a space or tab continues one)."""
    text = ics.decode()
    for fold in ("\r\n ", "\r\n\t"):
        text = text.replace(fold, "")
    return text.split("\r\n")


def test_hostile_names_in_the_organizer_notification_the_cancellation_and_event_ics(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    """The event's name and location, the buyer's and an attendee's: markup that would fetch, a
    template expression and header/property lines after a CRLF. The organizers' notification and the
    buyer's cancellation show them as text (escaped in HTML), and event.ics keeps each one inside its
    own property: no extra calendar line, no extra header, nothing fetched."""
    import icalendar

    with counting_server() as server:
        names = hostile_names(server.url)
        event_name = f"{names[1]} {{{{ 7*7 }}}}\r\nBcc: evil@evil.example"
        location = f"{names[2]}\r\nATTENDEE:mailto:evil@evil.example\r\nEND:VEVENT"
        buyer_name, attendee_name = names[3], names[5]
        identifier = confirmed_order(db, [(buyer_name, BUYER), (attendee_name, SHARED)], buyer_name=buyer_name,
                                     event_name=event_name, organizers=(("org@example.org", Role.ORGANIZER),))
        with db() as session, session.begin():
            order = load_order(session, identifier)
            order.event.location = location
        app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
        wait_settled(db, identifier, 4)  # buyer, attendee, and the owner's and the organizer's notification
        confirmation_mails = list(smtp.messages)
        with db() as session, session.begin():
            change_status(session, load_order(session, identifier), OrderStatus.CANCELLED, by="owner@example.org")
        app.send_task(CANCELLATION_TASK, args=[identifier], queue="orders")
        rows = wait_settled(db, identifier, 7)  # and the buyer's cancellation, a notice to each organizer
        assert server.paths == []

    assert [r.state for r in rows] == [DeliveryState.SENT] * 7
    assert len(smtp.messages) == 7
    mails = by_kind(confirmation_mails)
    cancellation_mails = by_kind(smtp.messages[len(confirmation_mails):])
    mails[("cancellation", BUYER)] = cancellation_mails[("cancellation", BUYER)]
    for message in smtp.messages:
        assert message["Bcc"] is None and all(key.lower() != "bcc" for key in message), message["X-Email-Kind"]
        assert "evil" not in str(message["To"]) and "evil" not in str(message["Cc"] or "")

    for key in (("organizer-notification", "owner@example.org"), ("organizer-notification", "org@example.org"),
                ("cancellation", BUYER)):
        message = mails[key]
        text, html = body(message, "plain"), body(message, "html")
        assert flat(names[1]) in flat(text) and "{{ 7*7 }}" in text, key
        assert buyer_name in text, key
        assert "<img" not in html and "<link" not in html and "<script" not in html, key
        assert "{{ 7*7 }}" in html, key  # the template expression is text, not evaluated
        assert "&lt;link rel=&#34;stylesheet&#34;" in html, key  # the buyer's name, escaped
        subject = str(message["Subject"])  # the CRLF is gone: what followed it is words of the subject
        assert "\r" not in subject and "\n" not in subject and flat(event_name) in subject, key
    notification = body(mails[("organizer-notification", "org@example.org")], "plain")
    assert "Eve" in notification and "x@evil.example" in notification  # the attendee's name, as text
    # A paid order that is cancelled carries its credit note, nothing else.
    assert all("credit note" in name for name in attachments(mails[("cancellation", BUYER)]))

    for key in (("confirmation-buyer", BUYER), ("confirmation-attendee", SHARED)):
        ics = attachments(mails[key])["event.ics"]
        lines = unfolded_lines(ics)
        names_of = [line.split(":", 1)[0].split(";", 1)[0] for line in lines if line]
        assert names_of.count("SUMMARY") == 1 and names_of.count("LOCATION") == 1, lines
        assert names_of.count("BEGIN") == names_of.count("END"), lines
        assert "ATTENDEE" not in names_of and "BCC" not in [n.upper() for n in names_of], lines
        [entry] = icalendar.Calendar.from_ical(ics).walk("VEVENT")
        assert str(entry["SUMMARY"]).replace("\r\n", "\n") == event_name.replace("\r\n", "\n")
        assert str(entry["LOCATION"]).replace("\r\n", "\n") == location.replace("\r\n", "\n")
