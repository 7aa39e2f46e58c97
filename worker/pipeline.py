"""The confirmation pipeline as plain functions: plan the emails, ensure the PDFs, send one delivery.

Tasks call these; they take a session factory and identifiers and know nothing about Celery.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from models.ordering import load_order, record
from models.orders import OrderEvent
from models.status import is_resendable
from ticketq.settings import settings
from worker.documents import order_documents, render_order
from worker.emails import (
    CANCELLATION_BATCH,
    CONFIRMATION_BATCH,
    PENDING,
    WITH_DOCUMENTS,
    DocumentsMissing,
    compose,
    confirmation_recipients,
    ensure_deliveries,
    next_resend_batch,
)
from worker.mail import DeliveryError, build_message, new_message_id, smtp_client
from worker.presenters import buyer_of, order_context
from worker.storage import documents_ready, store_documents

log = logging.getLogger("ticketq.pipeline")

ADVISORY_CLASS = 0x7471  # "tq": the namespace of our PostgreSQL advisory locks
# SQLite has no advisory locks: a 'sending' row younger than this is taken to have a live sender.
SENDING_LEASE = timedelta(seconds=120)


@dataclass
class Plan:
    """What a confirmation-like job leaves to do: deliveries to send now, and those waiting for PDFs."""

    identifier: str
    batch: str = ""
    now: list[int] = field(default_factory=list)
    after_documents: list[int] = field(default_factory=list)


def _split(plan: Plan, deliveries: list[EmailDelivery], docs_ready: bool) -> Plan:
    for d in deliveries:
        if d.state in PENDING:
            (plan.after_documents if d.kind in WITH_DOCUMENTS and not docs_ready else plan.now).append(d.id)
    return plan


def plan_confirmation(factory: sessionmaker[Session], identifier: str) -> Plan:
    """Record the confirmation emails once (buyer, attendees, organizers); say which still need sending."""
    with factory() as session, session.begin():
        order = load_order(session, identifier, lock=True)
        if not is_resendable(order.status):
            log.info("order %s is %s: no confirmation", identifier, order.status.value)
            return Plan(identifier)
        recipients = confirmation_recipients(session, order, organizers=True)
        deliveries = ensure_deliveries(session, order, CONFIRMATION_BATCH, recipients)
        return _split(Plan(identifier, CONFIRMATION_BATCH), deliveries, documents_ready(session, order))


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
        deliveries = ensure_deliveries(session, order, batch, recipients, requested_by=requested_by)
        return _split(Plan(identifier, batch), deliveries, documents_ready(session, order))


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
        deliveries = ensure_deliveries(session, order, CANCELLATION_BATCH, plan)
        return _split(Plan(identifier, CANCELLATION_BATCH), deliveries, True)


def pending_deliveries(factory: sessionmaker[Session], identifier: str, batch: str) -> list[int]:
    with factory() as session:
        order = load_order(session, identifier)
        return list(session.scalars(sa.select(EmailDelivery.id).where(
            EmailDelivery.order_id == order.id, EmailDelivery.batch == batch, EmailDelivery.state.in_(PENDING)
        ).order_by(EmailDelivery.id)))


def ensure_documents(factory: sessionmaker[Session], identifier: str) -> bool:
    """Render and store the order's PDFs unless the current revision's files are all on disk.

    Returns whether it rendered. The layout runs outside any transaction; only storing locks the order.
    """
    with factory() as session:
        order = load_order(session, identifier)
        if documents_ready(session, order):
            return False
        revision, context = order.revision, order_context(order)
        attendee_ids = [a.id for a in order.attendees]
    documents = order_documents(render_order(context, attendee_ids))
    with factory() as session, session.begin():
        order = load_order(session, identifier, lock=True)
        store_documents(session, order, revision, documents)
    return True


class Outcome(enum.StrEnum):
    SENT = "sent"
    DONE = "done"  # sent or failed before: nothing to do
    BUSY = "busy"  # another live worker is sending it
    NEEDS_DOCUMENTS = "needs-documents"
    RETRY = "retry"
    FAILED = "failed"


@contextmanager
def claim(factory: sessionmaker[Session], delivery_id: int) -> Iterator[bool]:
    """Hold a PostgreSQL advisory lock for the whole send, on a connection of its own.

    The lock dies with the connection, so a 'sending' row whose lock is free was left by a worker
    that died mid-send (resend: at-least-once), while a held lock means a live duplicate (skip).
    """
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn, conn.begin():
        yield bool(conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(ADVISORY_CLASS, delivery_id))))


def send_delivery(factory: sessionmaker[Session], delivery_id: int, smtp_url: str, *, final: bool) -> Outcome:
    """Send one logical email at most once per success: queued -> sending -> sent | failed.

    `final` says no retry is left, so a temporary failure marks the record failed.
    """
    with claim(factory, delivery_id) as ours:
        if not ours:
            return Outcome.BUSY
        with factory() as session, session.begin():
            prepared = _prepare(session, delivery_id)
        if not isinstance(prepared, tuple):
            return prepared
        identifier, message = prepared
        try:
            smtp_client(smtp_url).send(message)
        except DeliveryError as exc:
            return _record_failure(factory, delivery_id, exc, final=final)
        with factory() as session, session.begin():
            delivery = session.get_one(EmailDelivery, delivery_id)
            delivery.state, delivery.sent_at, delivery.last_error = DeliveryState.SENT, utcnow(), None
            delivery.updated_at = delivery.sent_at
            record(session, delivery.order, "email-sent", email_kind=delivery.kind.value, recipient=delivery.recipient,
                   batch=delivery.batch, message_id=delivery.message_id)
        log.info("order %s: %s sent to %s", identifier, delivery.kind.value, delivery.recipient)
        return Outcome.SENT


def _prepare(session: Session, delivery_id: int) -> Outcome | tuple[str, EmailMessage]:
    delivery = session.get(EmailDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.state in (DeliveryState.SENT, DeliveryState.FAILED):
        return Outcome.DONE
    now = utcnow()
    if (delivery.state is DeliveryState.SENDING and session.get_bind().dialect.name != "postgresql"
            and delivery.updated_at > now - SENDING_LEASE):
        return Outcome.BUSY
    order = delivery.order
    if delivery.kind is not EmailKind.CANCELLATION and not is_resendable(order.status):
        _fail(session, delivery, f"order is {order.status.value}; email not sent")
        return Outcome.FAILED
    message_id = delivery.message_id or new_message_id(settings.mail_from)
    try:
        message = build_message(compose(session, order, delivery, message_id))
    except DocumentsMissing:
        return Outcome.NEEDS_DOCUMENTS
    except DeliveryError as exc:  # an unusable address: nothing will ever send it
        _fail(session, delivery, exc.reply)
        return Outcome.FAILED
    delivery.state, delivery.message_id, delivery.updated_at = DeliveryState.SENDING, message_id, now
    delivery.attempts += 1
    return order.identifier, message


def _fail(session: Session, delivery: EmailDelivery, reason: str) -> None:
    delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.FAILED, reason[:2000], utcnow()
    record(session, delivery.order, "email-failed", email_kind=delivery.kind.value, recipient=delivery.recipient,
           batch=delivery.batch, error=reason[:500])
    log.warning("order %s: %s to %s failed: %s", delivery.order.identifier, delivery.kind.value,
                delivery.recipient, reason)


def _record_failure(factory: sessionmaker[Session], delivery_id: int, exc: DeliveryError, *, final: bool) -> Outcome:
    with factory() as session, session.begin():
        delivery = session.get_one(EmailDelivery, delivery_id)
        if exc.temporary and not final:
            delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.QUEUED, exc.reply, utcnow()
            log.info("order %s: %s to %s deferred: %s", delivery.order.identifier, delivery.kind.value,
                     delivery.recipient, exc.reply)
            return Outcome.RETRY
        _fail(session, delivery, exc.reply)
        return Outcome.FAILED
