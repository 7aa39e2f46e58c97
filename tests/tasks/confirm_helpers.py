"""Builders and waits shared by the confirmation pipeline's worker tests."""

from __future__ import annotations

import io
from collections.abc import Sequence
from email.message import EmailMessage

import sqlalchemy as sa
from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK
from models import Order
from models.deliveries import DeliveryState, EmailDelivery
from models.events import EventRole, Role
from models.outbox import OutboxJob
from models.placing import Person, submit_order
from models.status import OrderStatus
from models.transitions import change_status
from tests.factories import make_event, make_order, make_user
from tests.waiting import wait_until
from ticketq.embedded import SmtpSink
from worker import app

BUYER = "buyer@example.org"
SHARED = "family@example.org"
DONE = (DeliveryState.SENT, DeliveryState.FAILED)


def confirmed_order(
    db: sessionmaker[Session],
    attendees: Sequence[tuple[str, str]] = (("Ada Buyer", BUYER), ("Bea Family", SHARED), ("Cy Family", SHARED)),
    *,
    buyer_name: str = "Ada Buyer",
    event_name: str = "PyCon Test",
    completed: bool = True,
    organizers: Sequence[tuple[str, Role]] = (),
) -> str:
    """A submitted order (placed, or completed by its owner) with the given attendees; returns its identifier."""
    with db() as session, session.begin():
        owner = make_user(session, "owner@example.org")
        event = make_event(session, owner=owner, name=event_name)
        for email, role in organizers:
            session.add(EventRole(event_id=event.id, user_id=make_user(session, email).id, role=role))
        buyer = make_user(session, BUYER)
        order = make_order(session, event, buyer, quantity=len(attendees))
        # Placed: a bank transfer. Completed: paid online and marked paid by its owner, so the order has
        # one job, its confirmation (a placed order marked paid would send payment-received too).
        submit_order(session, order, payment_mode="card" if completed else "bank", buyer=Person(buyer_name, BUYER),
                     attendees=[Person(n, e) for n, e in attendees], by=BUYER)
        if completed:
            change_status(session, order, OrderStatus.COMPLETED, by=owner.email)
        return order.identifier


def sent_confirmation(db: sessionmaker[Session], smtp: SmtpSink) -> str:
    """A completed order whose confirmation the worker sent (its PDFs rendered); the sink emptied."""
    identifier = confirmed_order(db)
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
    wait_settled(db, identifier, 3)
    smtp.reset()
    return identifier


def deliveries(db: sessionmaker[Session], identifier: str) -> list[EmailDelivery]:
    with db() as session:
        return list(session.scalars(
            sa.select(EmailDelivery).join(Order).where(Order.identifier == identifier).order_by(EmailDelivery.id)
        ))


def wait_settled(db: sessionmaker[Session], identifier: str, count: int, timeout: float = 150) -> list[EmailDelivery]:
    """Wait until `count` delivery records exist and every one is sent or failed."""
    def settled() -> list[EmailDelivery] | None:
        rows = deliveries(db, identifier)
        return rows if len(rows) >= count and all(r.state in DONE for r in rows) else None

    return wait_until(settled, timeout, f"{count} settled deliveries of {identifier}", interval=0.2)


def wait_jobs_done(db: sessionmaker[Session], count: int, timeout: float = 90) -> list[OutboxJob]:
    """Wait until at least `count` jobs are recorded and every one of them has finished its run."""
    def finished() -> list[OutboxJob] | None:
        with db() as session:
            jobs = list(session.scalars(sa.select(OutboxJob).order_by(OutboxJob.id)))
        return jobs if len(jobs) >= count and all(j.done_at for j in jobs) else None

    return wait_until(finished, timeout, f"{count} finished jobs", interval=0.2)


def attachments(message: EmailMessage) -> dict[str, bytes]:
    return {part.get_filename() or "": part.get_payload(decode=True) for part in message.iter_attachments()}  # type: ignore[misc]


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def pdf_pages(data: bytes) -> int:
    return len(PdfReader(io.BytesIO(data)).pages)


def by_kind(messages: Sequence[EmailMessage]) -> dict[tuple[str, str], EmailMessage]:
    found: dict[tuple[str, str], EmailMessage] = {}
    for message in messages:
        key = (str(message["X-Email-Kind"]), str(message["To"]))
        assert key not in found, f"duplicate email {key}"
        found[key] = message
    return found
