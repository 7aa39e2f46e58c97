"""Languages through a real worker, Redis, PostgreSQL and SMTP sink: a German order gets German
subjects, bodies, PDFs and amounts; a Japanese one Japanese, with yen as Japan writes them; an Arabic
one reads from the right; the organizers read their notification in the event's language."""

from __future__ import annotations

import io
from decimal import Decimal
from email.message import EmailMessage

from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK, RESEND_TASK
from models.events import EventRole, Role
from models.placing import Person, change_locale, submit_order
from models.status import Actor
from models.transitions import load_order
from services.i18n import translations
from tests.backends import CeleryWorker
from tests.factories import make_event, make_order, make_user
from tests.tasks.confirm_helpers import BUYER, attachments, by_kind, pdf_text, wait_settled
from ticketq.embedded import SmtpSink
from worker import app

GUEST = "guest@example.org"


def order_in(db: sessionmaker[Session], *, event_locale: str, order_locale: str | None = None,
             currency: str = "EUR", price: str = "25.00", tax: str = "19") -> str:
    """A bank-transfer order of two tickets (buyer and guest) for an event with an organizer and an invoice."""
    with db() as session, session.begin():
        owner = make_user(session, "owner@example.org")
        event = make_event(session, owner=owner, tickets=(("Standard", price, 100),))
        event.locale, event.currency = event_locale, currency
        event.seller_name, event.seller_vat_id, event.tax_rate = "PyCon e.V.", "DE136695976", Decimal(tax)
        session.add(EventRole(event_id=event.id, user_id=make_user(session, "org@example.org").id,
                              role=Role.ORGANIZER))
        session.flush()
        order = make_order(session, event, make_user(session, BUYER), quantity=2)
        if order_locale:
            order.locale = order_locale
        submit_order(session, order, payment_mode="bank", buyer=Person("Ada Buyer", BUYER), by=BUYER,
                     attendees=[Person("Ada Buyer", BUYER), Person("Bea Guest", GUEST)])
        return order.identifier


def confirm(db: sessionmaker[Session], identifier: str, smtp: SmtpSink) -> dict[tuple[str, str], EmailMessage]:
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    wait_settled(db, identifier, 4)
    return by_kind([m for m in smtp.messages if m["X-Order-Identifier"] == identifier])


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


def test_a_german_order_is_german_and_its_organizers_read_the_event_s_language(
        db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink) -> None:
    identifier = order_in(db, event_locale="en", order_locale="de-AT")
    code, de = identifier[:8].upper(), translations("de").gettext
    emails = confirm(db, identifier, smtp)
    buyer = emails[("confirmation-buyer", BUYER)]
    assert str(buyer["Subject"]) == f"Ihre Tickets für PyCon Test (Bestellung {code})"
    assert buyer["Content-Language"] == "de-AT"
    text = body(buyer, "plain")
    # Austria's conventions: the currency sign first, "Jänner" would show for January.
    assert "Hallo Ada Buyer," in text and "€\xa050,00" in text and "Samstag, 1. Mai 2027" in text
    assert de("Bank transfer") in text and "Bank transfer" not in text
    assert '<html lang="de-AT" dir="ltr">' in body(buyer, "html")
    names = set(attachments(buyer))
    assert {"PyCon Test - Tickets.pdf", "event.ics"} <= names, names
    (invoice_name,) = [n for n in names if n.startswith("PyCon Test - Rechnung")]
    invoice = pdf_text(attachments(buyer)[invoice_name]).replace("\xa0", " ")
    for printed in ("Rechnung", "USt-IdNr. DE136695976", "€ 50,00", "19 %"):  # pypdf reads no-break spaces as spaces
        assert printed in invoice, printed
    tickets = pdf_text(attachments(buyer)["PyCon Test - Tickets.pdf"])
    assert de("Attendee").upper() in tickets.upper() and "Samstag, 1. Mai 2027" in tickets
    ics = attachments(buyer)["event.ics"].decode()
    assert f"DESCRIPTION:Bestellung {code}" in ics
    assert str(emails[("confirmation-attendee", GUEST)]["Subject"]) == "Ihr Ticket für PyCon Test"
    organizer = emails[("organizer-notification", "org@example.org")]
    assert str(organizer["Subject"]) == f"New order {code} for PyCon Test"  # the event's language: English
    assert "€50.00" in body(organizer, "plain")


def test_a_japanese_order_writes_yen_as_japan_does(db: sessionmaker[Session], celery_worker: CeleryWorker,
                                                   smtp: SmtpSink) -> None:
    identifier = order_in(db, event_locale="ja", currency="JPY", price="1200", tax="0")
    emails = confirm(db, identifier, smtp)
    buyer = emails[("confirmation-buyer", BUYER)]
    assert str(buyer["Subject"]).startswith("【PyCon Test】チケット")
    text = body(buyer, "plain")
    assert "￥2,400" in text and "2027年5月1日土曜日" in text and "Ada Buyer" in text
    organizer = emails[("organizer-notification", "org@example.org")]
    assert str(organizer["Subject"]).startswith("【PyCon Test】新規注文")
    tickets = attachments(buyer)[next(n for n in attachments(buyer) if n.endswith(".pdf") and "請求書" not in n)]
    reader = PdfReader(io.BytesIO(tickets))
    fonts = {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert any("CJKjp" in f or "JP" in f for f in fonts), fonts  # Japanese forms of the Han characters


def test_an_arabic_order_reads_from_the_right(db: sessionmaker[Session], celery_worker: CeleryWorker,
                                              smtp: SmtpSink) -> None:
    identifier = order_in(db, event_locale="ar")
    emails = confirm(db, identifier, smtp)
    buyer = emails[("confirmation-buyer", BUYER)]
    assert str(buyer["Subject"]) == translations("ar").gettext(
        "Your tickets for %(event)s (order %(code)s)") % {"event": "PyCon Test", "code": identifier[:8].upper()}
    html = body(buyer, "html")
    assert '<html lang="ar" dir="rtl">' in html and 'align="right"' in html and "text-align:right" in html
    (invoice_name,) = [n for n in attachments(buyer) if translations("ar").gettext("invoice %(number)s")
                       .split("%")[0].strip() in n]
    reader = PdfReader(io.BytesIO(attachments(buyer)[invoice_name]))
    assert reader.trailer["/Root"]["/Lang"] == "ar"  # pypdf cannot read shaped Arabic back: the PDF says it
    fonts = {str(f["/BaseFont"]) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert any("Arabic" in f for f in fonts), fonts


def test_a_resend_after_the_organizers_change_the_language_is_in_the_new_one_with_new_pdfs(
        db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink) -> None:
    identifier = order_in(db, event_locale="de")
    first = confirm(db, identifier, smtp)[("confirmation-buyer", BUYER)]
    assert first["Content-Language"] == "de" and "Tickets.pdf" in " ".join(attachments(first))
    with db() as session, session.begin():  # the buyer phoned: "in English, please"
        change_locale(session, load_order(session, identifier, lock=True), "en", actor=Actor.ORGANIZER,
                      by="owner@example.org")
    app.send_task(RESEND_TASK, args=[identifier, "owner@example.org"], queue="orders")
    rows = [r for r in wait_settled(db, identifier, 6) if r.batch == "resend-1"]
    assert {r.kind.value for r in rows} == {"confirmation-buyer", "confirmation-attendee"}
    again = [m for m in smtp.messages if m["X-Order-Identifier"] == identifier
             and m["X-Email-Kind"] == "confirmation-buyer" and m["Content-Language"] == "en"]
    assert len(again) == 1, [str(m["Subject"]) for m in smtp.messages]
    assert str(again[0]["Subject"]).startswith("Your tickets for PyCon Test")
    tickets = pdf_text(attachments(again[0])["PyCon Test - tickets.pdf"])
    assert "ADMISSION TICKET 1 OF 2" in tickets and "Samstag" not in tickets  # rendered anew, in English
