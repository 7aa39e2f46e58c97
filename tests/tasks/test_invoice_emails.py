"""Invoices and the emails around them through a real worker, Redis, PostgreSQL and SMTP sink: the
bank transfer invoice says how to pay, payment-received brings it marked paid, a refund brings a credit
note and tells the organizers; every email names its event and organizer as a person reads them."""

from __future__ import annotations

from decimal import Decimal
from email.message import EmailMessage

import facturx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CANCELLATION_TASK, CONFIRM_TASK, PAYMENT_RECEIVED_TASK
from models import EventRole, Invoice, InvoiceKind, Order
from models.deliveries import DeliveryState, DocumentKind
from models.events import Role
from models.placing import Person, submit_order
from models.status import OrderStatus
from models.transitions import change_status, load_order
from services.storage import find_document
from tests.backends import CeleryWorker
from tests.factories import make_event, make_order, make_user
from tests.tasks.confirm_helpers import BUYER, attachments, by_kind, pdf_text, wait_settled
from ticketq.embedded import SmtpSink
from worker import app

BANK = "PyCon e.V.\nIBAN DE89 3704 0044 0532 0130 00"


def placed_order(db: sessionmaker[Session], *, price: str = "25.00", mode: str = "bank",
                 organizers: tuple[tuple[str, Role], ...] = ()) -> str:
    """An order of two tickets (the buyer's and a guest's) for an event that names its seller."""
    with db() as session, session.begin():
        owner = make_user(session, "owner@example.org")
        event = make_event(session, owner=owner, tickets=(("Standard", price, 100),))
        event.seller_name, event.seller_vat_id, event.tax_rate = "PyCon e.V.", "DE136695976", Decimal("19")
        event.bank_details, event.contact_email = BANK, "tickets@pycon.example"
        for email, role in organizers:
            session.add(EventRole(event_id=event.id, user_id=make_user(session, email).id, role=role))
        order = make_order(session, event, make_user(session, BUYER), quantity=2)
        submit_order(session, order, payment_mode=mode, buyer=Person("Ada Buyer", BUYER), by=BUYER,
                     attendees=[Person("Ada Buyer", BUYER), Person("Bea Guest", "bea@example.org")])
        return order.identifier


def set_status(db: sessionmaker[Session], identifier: str, status: OrderStatus) -> None:
    with db() as session, session.begin():
        change_status(session, load_order(session, identifier), status, by="owner@example.org")


def invoices(db: sessionmaker[Session], identifier: str) -> list[Invoice]:
    with db() as session:
        return list(session.scalars(sa.select(Invoice).join(Order, Order.id == Invoice.order_id)
                                    .where(Order.identifier == identifier).order_by(Invoice.id)))


def pdf_named(message: EmailMessage, part: str) -> bytes:
    (found,) = [content for name, content in attachments(message).items() if part in name]
    return found


def test_bank_transfer_then_payment_then_refund(db: sessionmaker[Session], celery_worker: CeleryWorker,
                                                 smtp: SmtpSink) -> None:
    identifier = placed_order(db, organizers=(("org@example.org", Role.ORGANIZER),))
    code = identifier[:8].upper()
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    wait_settled(db, identifier, 4)
    buyer = by_kind(smtp.messages)[("confirmation-buyer", BUYER)]
    assert str(buyer["Subject"]) == f"Your tickets for PyCon Test (order {code})"
    assert identifier not in str(buyer["Subject"]) and buyer["X-Order-Identifier"] == identifier
    assert (buyer["From"].addresses[0].display_name, buyer["From"].addresses[0].addr_spec) == (
        "PyCon Test", "tickets@localhost")
    assert str(buyer["Reply-To"]) == "tickets@pycon.example"
    (issued,) = invoices(db, identifier)
    assert issued.number == f"INV-{issued.year}-000001"
    assert set(attachments(buyer)) == {"PyCon Test - tickets.pdf", f"PyCon Test - invoice {issued.number}.pdf",
                                       "event.ics"}
    invoice = pdf_named(buyer, "invoice")
    assert "Payment due by" in pdf_text(invoice) and "IBAN DE89 3704 0044 0532 0130 00" in pdf_text(invoice)
    text = buyer.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Please pay €50.00 by" in text and "IBAN DE89 3704 0044 0532 0130 00" in text
    guest = by_kind(smtp.messages)[("confirmation-attendee", "bea@example.org")]
    assert set(attachments(guest)) == {"PyCon Test - ticket 2 - Bea Guest.pdf", "event.ics"}
    organizer = by_kind(smtp.messages)[("organizer-notification", "org@example.org")]
    assert str(organizer["Reply-To"]) == BUYER and str(organizer["Subject"]) == f"New order {code} for PyCon Test"

    smtp.reset()
    set_status(db, identifier, OrderStatus.COMPLETED)  # writes the payment-received job; sent here too
    app.send_task(PAYMENT_RECEIVED_TASK, args=[identifier], queue="orders")
    wait_settled(db, identifier, 5)
    [paid] = smtp.messages
    assert (paid["X-Email-Kind"], str(paid["To"])) == ("payment-received", BUYER)
    assert str(paid["Subject"]) == f"Payment received for your order {code} (PyCon Test)"
    marked = pdf_named(paid, "invoice")
    assert "Paid" in pdf_text(marked) and "Payment due" not in pdf_text(marked)
    _, xml = facturx.get_xml_from_pdf(marked, check_xsd=True)
    assert b"<ram:DuePayableAmount>0.00</ram:DuePayableAmount>" in xml
    (first,) = invoices(db, identifier)  # marked paid, not numbered again

    smtp.reset()
    set_status(db, identifier, OrderStatus.CANCELLED)
    app.send_task(CANCELLATION_TASK, args=[identifier], queue="orders")
    rows = wait_settled(db, identifier, 8)
    assert all(r.state is DeliveryState.SENT for r in rows)
    mails = by_kind(smtp.messages)
    assert set(mails) == {("cancellation", BUYER), ("organizer-notification", "owner@example.org"),
                          ("organizer-notification", "org@example.org")}
    credit = pdf_named(mails[("cancellation", BUYER)], "credit note")
    assert f"This credit note cancels invoice {first.number}" in pdf_text(credit)
    body = mails[("cancellation", BUYER)].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "refunded by bank transfer to the account you paid from" in body
    notice = mails[("organizer-notification", "org@example.org")]
    assert str(notice["Subject"]) == f"Order {code} for PyCon Test was cancelled"
    assert "Please refund €50.00 by bank transfer" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    issued = invoices(db, identifier)
    assert [(i.kind, i.sequence, i.cites_id) for i in issued] == [
        (InvoiceKind.INVOICE, 1, None), (InvoiceKind.CREDIT_NOTE, 2, first.id)]
    with db() as session:  # what GET …/credit-note.pdf and …/invoice.pdf serve
        order = load_order(session, identifier)
        for kind in (DocumentKind.CREDIT_NOTE, DocumentKind.INVOICE):
            path = find_document(session, order, kind)
            assert path is not None and path.read_bytes().startswith(b"%PDF"), kind
        assert find_document(session, order, DocumentKind.CREDIT_NOTE).read_bytes() == credit  # type: ignore[union-attr]


def test_a_free_order_sends_no_invoice(db: sessionmaker[Session], celery_worker: CeleryWorker,
                                       smtp: SmtpSink) -> None:
    identifier = placed_order(db, price="0.00", mode="free")
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    wait_settled(db, identifier, 3)
    buyer = by_kind(smtp.messages)[("confirmation-buyer", BUYER)]
    assert set(attachments(buyer)) == {"PyCon Test - tickets.pdf", "event.ics"}
    text = buyer.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Invoice" not in text and "Payment: Free · Free" not in text
    assert invoices(db, identifier) == []


def test_the_two_worker_processes_number_one_sellers_orders_without_gap_or_duplicate(
        db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink) -> None:
    """The live worker runs two children: ten confirmations sent at once are numbered by both."""
    with db() as session, session.begin():
        event = make_event(session, owner=make_user(session, "owner@example.org"))
        buyer = make_user(session, BUYER)
        identifiers = []
        for _ in range(10):
            order = make_order(session, event, buyer)
            submit_order(session, order, payment_mode="onsite", buyer=Person("Ada Buyer", BUYER), by=BUYER,
                         attendees=[Person("Ada Buyer", BUYER)])
            identifiers.append(order.identifier)
    for identifier in identifiers:
        app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    for identifier in identifiers:
        wait_settled(db, identifier, 2)  # the buyer's confirmation and the owner's notice
    with db() as session:
        sequences = list(session.scalars(sa.select(Invoice.sequence)))
    assert sorted(sequences) == list(range(1, 11)), sequences
    assert len(smtp.messages) == 20
