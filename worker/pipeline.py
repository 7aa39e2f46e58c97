"""The confirmation pipeline as plain functions: plan a batch of emails, ensure the PDFs (sending: worker.delivery).

Tasks call these; they take a session factory and identifiers and know nothing about Celery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.deliveries import EmailDelivery, EmailKind
from models.ordering import load_order, record
from models.orders import Order, OrderEvent
from models.status import is_resendable
from worker.documents import order_documents, render_order
from worker.emails import (
    CANCELLATION_BATCH,
    CONFIRMATION_BATCH,
    PENDING,
    WITH_DOCUMENTS,
    confirmation_recipients,
    ensure_deliveries,
    next_resend_batch,
)
from worker.presenters import buyer_of, load_full_order, order_context
from worker.storage import documents_ready, fingerprint_of, store_documents

log = logging.getLogger("ticketq.pipeline")


@dataclass
class Plan:
    """What a confirmation-like job leaves to do: the batch's unsent deliveries, and whether any
    of them carries PDFs (then documents.render goes first and sends the batch after)."""

    identifier: str
    batch: str = ""
    pending: list[int] = field(default_factory=list)
    needs_documents: bool = False


def _plan(identifier: str, batch: str, deliveries: list[EmailDelivery]) -> Plan:
    pending = [d for d in deliveries if d.state in PENDING]
    return Plan(identifier, batch, [d.id for d in pending], any(d.kind in WITH_DOCUMENTS for d in pending))


def plan_confirmation(factory: sessionmaker[Session], identifier: str) -> Plan:
    """Record the confirmation emails once (buyer, attendees, organizers); say which still need sending."""
    with factory() as session, session.begin():
        order = load_order(session, identifier)
        if not is_resendable(order.status):
            log.info("order %s is %s: no confirmation", identifier, order.status.value)
            return Plan(identifier)
        recipients = confirmation_recipients(session, order, organizers=True)
        return _plan(identifier, CONFIRMATION_BATCH, ensure_deliveries(session, order, CONFIRMATION_BATCH, recipients))


def plan_resend(factory: sessionmaker[Session], identifier: str, requested_by: str | None, job_id: str | None) -> Plan:
    """A new batch of buyer and attendee emails; the same job redelivered reuses its batch."""
    with factory() as session, session.begin():
        order = load_order(session, identifier, lock=True)
        if not is_resendable(order.status):
            log.info("order %s is %s: confirmation not resent", identifier, order.status.value)
            return Plan(identifier)
        batch = _batch_of_job(session, order.id, job_id)
        if batch is None:
            batch = next_resend_batch(session, order)
            record(session, order, "resend-queued", actor=requested_by, batch=batch, job=job_id)
        recipients = confirmation_recipients(session, order, organizers=False)
        return _plan(identifier, batch, ensure_deliveries(session, order, batch, recipients, requested_by=requested_by))


def _batch_of_job(session: Session, order_id: int, job_id: str | None) -> str | None:
    if not job_id:
        return None
    rows = session.scalars(sa.select(OrderEvent).where(OrderEvent.order_id == order_id,
                                                       OrderEvent.kind == "resend-queued"))
    return next((str(r.detail["batch"]) for r in rows if r.detail.get("job") == job_id), None)


def plan_cancellation(factory: sessionmaker[Session], identifier: str) -> Plan:
    with factory() as session, session.begin():
        order = load_order(session, identifier)
        _, buyer = buyer_of(order)
        plan = [(EmailKind.CANCELLATION, buyer.strip().lower())] if buyer else []
        return _plan(identifier, CANCELLATION_BATCH, ensure_deliveries(session, order, CANCELLATION_BATCH, plan))


def _pending(session: Session, order_id: int, batch: str) -> list[int]:
    return list(session.scalars(sa.select(EmailDelivery.id).where(
        EmailDelivery.order_id == order_id, EmailDelivery.batch == batch, EmailDelivery.state.in_(PENDING)
    ).order_by(EmailDelivery.id)))


def ensure_documents(factory: sessionmaker[Session], identifier: str) -> bool:
    """Render and store the order's PDFs unless files for its current content are all on disk."""
    return prepare_batch(factory, identifier, None)[0]


def prepare_batch(factory: sessionmaker[Session], identifier: str, batch: str | None) -> tuple[bool, list[int]]:
    """Ensure the order's PDFs (render unless stored), then name the batch's unsent deliveries.

    Returns (rendered, pending delivery ids). The layout runs outside any transaction; only
    storing locks the order row, so two renderings of one order record one set of rows.
    """
    with factory() as session, session.begin():
        order = load_full_order(session, Order.identifier == identifier)
        revision, context = order.revision, order_context(order)
        fingerprint = fingerprint_of(context)
        if documents_ready(session, order, fingerprint):
            return False, _pending(session, order.id, batch) if batch else []
        attendee_ids = [a.id for a in order.attendees]
    documents = order_documents(render_order(context, attendee_ids))
    with factory() as session, session.begin():
        order = load_order(session, identifier, lock=True)
        store_documents(session, order, revision, documents, fingerprint)
        return True, _pending(session, order.id, batch) if batch else []
