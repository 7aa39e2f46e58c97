"""orders.confirm through a real worker, Redis, PostgreSQL and SMTP sink: exactly the contract's emails."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK
from models.deliveries import DeliveryState, DocumentKind
from models.events import Role
from models.transitions import load_order
from services.storage import find_document
from tests.backends import CeleryWorker
from tests.tasks.confirm_helpers import (
    BUYER,
    SHARED,
    attachments,
    by_kind,
    confirmed_order,
    pdf_pages,
    pdf_text,
    wait_jobs_done,
    wait_settled,
)
from ticketq.embedded import SmtpSink
from worker import app

ORGANIZERS = (("owner@example.org", Role.COORGANIZER), ("org@example.org", Role.ORGANIZER))


def test_a_completed_order_sends_exactly_the_contracts_emails(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db, organizers=ORGANIZERS)
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")

    rows = wait_settled(db, identifier, 4)
    assert [r.last_error for r in rows] == [None] * 4
    assert {(r.kind.value, r.recipient, r.state) for r in rows} == {
        ("confirmation-buyer", BUYER, DeliveryState.SENT),
        ("confirmation-attendee", SHARED, DeliveryState.SENT),
        ("organizer-notification", "owner@example.org", DeliveryState.SENT),
        ("organizer-notification", "org@example.org", DeliveryState.SENT),
    }
    assert all(r.batch == "confirmation" and r.message_id and r.sent_at and r.attempts == 1 for r in rows)
    mails = by_kind(smtp.messages)
    assert set(mails) == {(r.kind.value, r.recipient) for r in rows}

    buyer = mails[("confirmation-buyer", BUYER)]
    assert buyer["X-Order-Identifier"] == identifier
    assert buyer["Message-ID"] == next(r.message_id for r in rows if r.recipient == BUYER)
    assert buyer.get_body(("plain",)) is not None and buyer.get_body(("html",)) is not None
    assert any(p.get_content_type() == "multipart/alternative" for p in buyer.walk())
    files = attachments(buyer)
    number = next(name for name in files if " - invoice " in name).removesuffix(".pdf").rpartition(" ")[2]
    assert set(files) == {"PyCon Test - tickets.pdf", f"PyCon Test - invoice {number}.pdf", "event.ics"}
    tickets = pdf_text(files["PyCon Test - tickets.pdf"])
    assert pdf_pages(files["PyCon Test - tickets.pdf"]) == 3
    for text in ("Ada Buyer", "Bea Family", "Cy Family", "PyCon Test", identifier, "Berlin", "Europe/Berlin", "11:00"):
        assert text in tickets
    invoice = pdf_text(files[f"PyCon Test - invoice {number}.pdf"])
    for text in ("Invoice", number, "Ada Buyer", "owner@example.org", "€75.00", "Card payment",
                 identifier[:8].upper(), "Paid"):
        assert text in invoice
    ics = files["event.ics"].decode()
    assert f"UID:{identifier}@ticketq" in ics and "SUMMARY:PyCon Test" in ics and "TZID=Europe/Berlin" in ics

    family = attachments(mails[("confirmation-attendee", SHARED)])
    bea, cy = "PyCon Test - ticket 2 - Bea Family.pdf", "PyCon Test - ticket 3 - Cy Family.pdf"
    assert set(family) == {bea, cy, "event.ics"}
    assert pdf_pages(family[bea]) == 1
    assert "Bea Family" in pdf_text(family[bea]) and "Ada Buyer" not in pdf_text(family[bea])
    assert "Cy Family" in pdf_text(family[cy])

    organizer = mails[("organizer-notification", "org@example.org")]
    assert organizer.get_content_type() == "multipart/alternative" and attachments(organizer) == {}

    with db() as session:
        order = load_order(session, identifier)
        assert find_document(session, order, DocumentKind.TICKETS) is not None
        assert find_document(session, order, DocumentKind.ATTENDEE_TICKET, order.attendees[1].id) is not None
        kinds = [e.kind for e in order.history]
        assert kinds.count("email-sent") == 4


def test_running_confirm_twice_sends_nothing_twice(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db, completed=False)
    for _ in range(2):
        app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    wait_settled(db, identifier, 3)
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")  # and once more after all were sent
    jobs = wait_jobs_done(db, 4)  # the order's own confirmation job, and the three sent by hand
    assert [j.task for j in jobs] == [CONFIRM_TASK] * 4 and all(j.last_error is None for j in jobs)
    rows = wait_settled(db, identifier, 3)
    assert len(rows) == 3 and all(r.attempts == 1 for r in rows)
    assert sorted(by_kind(smtp.messages)) == sorted((r.kind.value, r.recipient) for r in rows)
