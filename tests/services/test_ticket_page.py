"""The ticket page as an attendee reads it: everything the door and the attendee need on one A4 page,
the QR code large enough to scan from a phone, the time with its zone, the PDF titled."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from models.deliveries import DocumentKind
from models.events import Event, EventRole, Role, TicketType
from models.orders import Attendee, Order
from models.status import OrderStatus
from models.users import User
from services.formats import event_times
from services.presenters import order_context
from services.rendering import order_documents, render_html, render_order
from services.templating import environment

MM = 96 / 25.4  # CSS pixels per millimetre


def event(starts: datetime, ends: datetime, zone: str) -> Event:
    return Event(name="Jazz Night", starts_at=starts, ends_at=ends, timezone=zone, location="Blue Note, 131 W 3rd St",
                 currency="USD")


def an_order() -> Order:
    """A placed order with two tickets, built in memory (no database): what the worker would load."""
    night = event(datetime(2027, 7, 9, 23, 30, tzinfo=UTC), datetime(2027, 7, 10, 3, 0, tzinfo=UTC),
                  "America/New_York")
    night.roles = [EventRole(role=Role.OWNER, user=User(email="nova@example.org", name="Nova Events"))]
    vip, free = TicketType(name="VIP table", price=Decimal("85.00")), TicketType(name="Guest list", price=Decimal(0))
    order = Order(id=41, identifier="c0ffee" + "0" * 26, status=OrderStatus.PLACED, amount=Decimal("85.00"),
                  currency="USD", payment_mode="bank", buyer_name="Ada Lovelace", buyer_email="ada@example.org",
                  created_at=datetime(2027, 6, 1, tzinfo=UTC), event=night)
    order.attendees = [
        Attendee(id=501, position=0, name="Ada Lovelace", email="ada@example.org", secret="s" * 32,
                 code="K7QM2D9FXH", ticket_type=vip),
        Attendee(id=502, position=1, name="Чарльз Бэббидж", email="cb@example.org", secret="t" * 32,
                 code="0123456789", ticket_type=free),
    ]
    return order


def text_of(pdf: bytes) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())


def test_a_ticket_shows_what_the_door_and_the_attendee_need() -> None:
    order = an_order()
    documents = order_documents(render_order(order_context(order), [501, 502]))
    ada = text_of(documents[(DocumentKind.ATTENDEE_TICKET, 501)])
    for expected in ("Jazz Night", "Friday, July 9, 2027", "7:30 PM – 11:00 PM EDT (America/New_York)",
                     "Blue Note, 131 W 3rd St", "Ada Lovelace", "VIP table", "$85.00", "Nova Events",
                     "K7QM2-D9FXH", order.identifier, "C0FFEE00", "ADMISSION TICKET 1 OF 2"):
        assert expected in ada, expected
    assert "Чарльз" not in ada  # the other attendee's page is not in this one
    guest = text_of(documents[(DocumentKind.ATTENDEE_TICKET, 502)])
    assert "Чарльз Бэббидж" in guest and "Guest list" in guest and "Free" in guest and "01234-56789" in guest
    assert len(PdfReader(io.BytesIO(documents[(DocumentKind.TICKETS, None)])).pages) == 2


def test_every_pdf_has_a_title_and_the_organizer_as_author() -> None:
    documents = order_documents(render_order(order_context(an_order()), [501, 502]))
    titles = {}
    for key, pdf in documents.items():
        meta = PdfReader(io.BytesIO(pdf)).metadata
        assert meta is not None and meta.author == "Nova Events", key
        titles[key] = meta.title
    assert titles[(DocumentKind.TICKETS, None)] == "Tickets · Jazz Night"
    assert titles[(DocumentKind.ATTENDEE_TICKET, 502)] == "Ticket · Jazz Night · Чарльз Бэббидж"
    # The invoice is its own PDF/A-3 layout (services/einvoice.py, tests/services/test_einvoice.py).
    assert (DocumentKind.INVOICE, None) not in titles


def test_the_qr_code_is_printed_large_and_the_page_is_filled() -> None:
    html = environment("en").get_template("pdf/order.html").render(**order_context(an_order()))
    _, anchors = render_html(html)
    first = anchors[0]
    qr_height = (first["code-501"][1] - first["qr-501"][1]) / MM
    assert 80 <= qr_height <= 100, qr_height  # a phone showing the whole page still resolves each module
    assert first["ticket-501"][1] < 20 * MM  # the ticket starts at the top of its page (18 mm margin)…
    assert "ticket-502" in anchors[1]  # …and the next one on the next page


@pytest.mark.parametrize(("locale", "zone", "starts", "ends", "expected"), [
    ("en", "America/New_York", datetime(2027, 7, 9, 23, 30), datetime(2027, 7, 10, 3, 0),
     "7:30\u202fPM – 11:00\u202fPM EDT"),
    ("en", "America/New_York", datetime(2027, 1, 9, 23, 30), datetime(2027, 1, 10, 3, 0),
     "6:30\u202fPM – 10:00\u202fPM EST"),
    # No abbreviation in the locale's data: the offset in its words, never a bare "+0400".
    ("en", "Asia/Dubai", datetime(2027, 3, 1, 15, 0), datetime(2027, 3, 1, 17, 0),
     "7:00\u202fPM – 9:00\u202fPM GMT+04:00"),
    ("fr", "Asia/Dubai", datetime(2027, 3, 1, 15, 0), datetime(2027, 3, 1, 17, 0), "19:00 – 21:00 UTC+04:00"),
    # A night across the clock change names both zones, in the reader's language.
    ("en-GB", "Europe/Berlin", datetime(2027, 10, 30, 23, 30), datetime(2027, 10, 31, 3, 0), "01:30 CEST – 04:00 CET"),
    ("de", "Europe/Berlin", datetime(2027, 10, 30, 23, 30), datetime(2027, 10, 31, 3, 0), "01:30 MESZ – 04:00 MEZ"),
    ("ja", "Asia/Tokyo", datetime(2027, 3, 1, 9, 0), datetime(2027, 3, 1, 12, 0), "18:00 – 21:00 JST"),
    ("en", "UTC", datetime(2027, 3, 1, 9, 0), datetime(2027, 3, 2, 17, 0),
     "9:00\u202fAM UTC – Tuesday, March 2, 2027, 5:00\u202fPM UTC"),
])
def test_the_time_names_its_zone(locale: str, zone: str, starts: datetime, ends: datetime, expected: str) -> None:
    assert event_times(event(starts.replace(tzinfo=UTC), ends.replace(tzinfo=UTC), zone), locale)["time"] == expected
