"""What each order job does, as plain functions named like their tasks (tasks/ wraps them).

`confirm` is the whole confirmation in one job: load the order once, record the emails it owes,
render (or reuse) and store the PDFs, send every email over one SMTP connection. Jobs on the mail
queue never render: when the stored PDFs are gone they hand the batch to `deliver_batch` on the
documents queue. Each function takes a session factory and identifiers and knows nothing about
Celery; it returns the jobs it wrote, for the caller to publish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from core.jobs import DELIVER_BATCH_TASK
from core.settings import settings
from models.deliveries import EmailDelivery, EmailKind
from models.history import record
from models.invoices import issue_owed, owes_more
from models.orders import Order, OrderEvent
from models.outbox import enqueue_job
from models.resending import MERGED_BATCH, QUEUED_BATCH, joined_batch
from models.status import is_paid, is_resendable
from models.transitions import load_order, lock_order
from services.einvoice import render_invoices
from services.lag import observe_confirmation
from services.messages import WITH_DOCUMENTS
from services.outcomes import Outcome
from services.presenters import load_full_order, order_context
from services.recipients import (
    CANCELLATION_BATCH,
    CONFIRMATION_BATCH,
    PAYMENT_BATCH,
    buyer_notice,
    confirmation_recipients,
    ensure_deliveries,
    next_resend_batch,
    organizer_notices,
)
from services.rendering import order_documents, render_order
from services.sending import UNSENT, send_deliveries
from services.storage import (
    DocumentKey,
    documents_ready,
    expected_keys,
    fingerprint_of,
    store_documents,
    stored_documents,
)

log = logging.getLogger("ticketq.pipeline")


@dataclass
class Done:
    """What a job did: each delivery's outcome and the CPU its rendering took (None: nothing
    rendered). The rendering's CPU is in the log line, so an operator sees what a
    big order costs, and the benchmark can compare it with rendering alone."""

    identifier: str
    batch: str = ""
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    render_seconds: float | None = None

    @property
    def rendered(self) -> bool:
        return self.render_seconds is not None

    def __str__(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        said = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "nothing to send"
        rendered = ("" if self.render_seconds is None
                    else f"; PDFs rendered in {self.render_seconds * 1000:.1f} ms of CPU")
        return f"order {self.identifier}: batch {self.batch or '-'}: {said}{rendered}"


def confirm(factory: sessionmaker[Session], identifier: str) -> Done:
    """orders.confirm: the buyer's, attendees' and organizers' emails, with the PDFs, in one job."""
    with factory() as session, session.begin():
        order = load_full_order(session, Order.identifier == identifier)
        if not is_resendable(order.status):
            log.info("order %s is %s: no confirmation", identifier, order.status.value)
            return Done(identifier)
        issue_invoices(session, order)  # its number, in the transaction that records the emails showing it
        recipients = confirmation_recipients(session, order, organizers=True)
        rows = ensure_deliveries(session, order, CONFIRMATION_BATCH, recipients)
    return _deliver(factory, order, CONFIRMATION_BATCH, rows, may_render=True)


def resend_confirmation(factory: sessionmaker[Session], identifier: str, requested_by: str | None,
                        job_key: str | None) -> Done:
    """orders.resend_confirmation: a new batch of buyer and attendee emails with the stored PDFs.

    `job_key` identifies the request: the same job delivered again reuses its batch, and a job
    requested before another job of the order chose its batch joins that batch (one copy each).
    """
    with factory() as session, session.begin():
        locked = load_order(session, identifier, lock=True)
        order = load_full_order(session, Order.id == locked.id)
        if not is_resendable(order.status):
            log.info("order %s is %s: confirmation not resent", identifier, order.status.value)
            return Done(identifier)
        batch = _batch_of_job(session, order.id, job_key)
        if batch is None and (batch := joined_batch(session, order.id, job_key)) is not None:
            record(session, order, MERGED_BATCH, actor=requested_by, batch=batch, job=job_key)
        if batch is None:
            batch = next_resend_batch(session, order)
            record(session, order, QUEUED_BATCH, actor=requested_by, batch=batch, job=job_key)
        recipients = confirmation_recipients(session, order, organizers=False)
        rows = ensure_deliveries(session, order, batch, recipients, requested_by=requested_by)
    return _deliver(factory, order, batch, rows, may_render=False)


def send_cancellation(factory: sessionmaker[Session], identifier: str) -> Done:
    """orders.send_cancellation: the buyer's cancellation email (with the credit note of an invoiced
    order) and a notice to the organizers."""
    with factory() as session, session.begin():
        order = load_full_order(session, Order.identifier == identifier)
        issue_invoices(session, order)
        plan = buyer_notice(order, EmailKind.CANCELLATION) + organizer_notices(order)
        rows = ensure_deliveries(session, order, CANCELLATION_BATCH, plan)
    return _deliver(factory, order, CANCELLATION_BATCH, rows, may_render=False)


def send_payment_received(factory: sessionmaker[Session], identifier: str) -> Done:
    """orders.send_payment_received: a placed order was paid; the buyer gets the invoice marked paid."""
    with factory() as session, session.begin():
        order = load_full_order(session, Order.identifier == identifier)
        if not is_paid(order.status):
            log.info("order %s is %s: no payment received", identifier, order.status.value)
            return Done(identifier)
        issue_invoices(session, order)
        rows = ensure_deliveries(session, order, PAYMENT_BATCH, buyer_notice(order, EmailKind.PAYMENT_RECEIVED))
    return _deliver(factory, order, PAYMENT_BATCH, rows, may_render=True)


def issue_invoices(session: Session, order: Order) -> None:
    """Issue what the order is owed (models/invoices.py) and show it on the loaded order; an order
    loaded with everything it is owed costs no query."""
    if owes_more(order, order.invoices):
        set_committed_value(order, "invoices", issue_owed(session, order))


def deliver_batch(factory: sessionmaker[Session], identifier: str, batch: str) -> Done:
    """documents.deliver_batch: render the PDFs a mail job found missing, then send its batch."""
    with factory() as session:
        order = load_full_order(session, Order.identifier == identifier)
        rows = _batch_rows(session, order.id, batch)
    return _deliver(factory, order, batch, rows, may_render=True)


def send_delivery(factory: sessionmaker[Session], delivery_id: int) -> Done:
    """mail.send_delivery: the retry of one email whose earlier try met a temporary failure."""
    with factory() as session:
        row = session.get(EmailDelivery, delivery_id)
        if row is None:
            return Done("-")
        order = load_full_order(session, Order.id == row.order_id)
    return _deliver(factory, order, row.batch, [row], may_render=False)


def _deliver(factory: sessionmaker[Session], order: Order, batch: str, rows: Sequence[EmailDelivery], *,
             may_render: bool) -> Done:
    done = Done(order.identifier, batch, {r.id: Outcome.DONE for r in rows})
    unsent = [r for r in rows if r.state in UNSENT]
    if not unsent:
        return done
    documents: dict[DocumentKey, bytes] = {}
    if any(r.kind in WITH_DOCUMENTS for r in unsent):
        documents, done.render_seconds = (ensure_documents(factory, order) if may_render
                                          else (stored_documents(order), None))
    sent = send_deliveries(factory, order, [r.id for r in unsent], documents, settings.require_smtp_url())
    done.outcomes.update(sent.outcomes)  # retries are jobs with a later run_after: beat's relay sends them
    observe_confirmation(factory, order, batch, done.outcomes)
    if sent.ids(Outcome.NEEDS_DOCUMENTS):
        with factory() as session, session.begin():
            enqueue_job(session, DELIVER_BATCH_TASK, [order.identifier, batch])  # published as the run ends
    return done


def ensure_documents(factory: sessionmaker[Session], order: Order) -> tuple[dict[DocumentKey, bytes], float | None]:
    """The order's PDFs for its current content: read when all are stored, else rendered and stored.

    Returns (documents, CPU seconds of the rendering, or None when the stored ones were reused). The
    layout runs outside any transaction; only storing locks the order row, so two renderings of one
    order record one set of rows.
    """
    with factory() as session, session.begin():
        issue_invoices(session, order)  # a job that got here first still numbers the invoice once
    context = order_context(order)
    fingerprint = fingerprint_of(context)
    with factory() as session, session.begin():
        if documents_ready(session, order, fingerprint):
            stored = stored_documents(order, fingerprint)
            if len(stored) == len(expected_keys(order)):
                return stored, None
    started = time.thread_time()  # this thread's CPU only: right under a thread pool as under prefork
    documents = order_documents(render_order(context, [a.id for a in order.attendees]))
    documents.update(render_invoices(context))
    spent = time.thread_time() - started
    with factory() as session, session.begin():
        lock_order(session, order.id)
        store_documents(session, order, order.revision, documents, fingerprint)
    return documents, spent


def _batch_rows(session: Session, order_id: int, batch: str) -> list[EmailDelivery]:
    return list(session.scalars(sa.select(EmailDelivery).where(
        EmailDelivery.order_id == order_id, EmailDelivery.batch == batch).order_by(EmailDelivery.id)))


def _batch_of_job(session: Session, order_id: int, job_key: str | None) -> str | None:
    if not job_key:
        return None
    rows = session.scalars(sa.select(OrderEvent).where(OrderEvent.order_id == order_id,
                                                       OrderEvent.kind.in_((QUEUED_BATCH, MERGED_BATCH))))
    return next((str(r.detail["batch"]) for r in rows if r.detail.get("job") == job_key), None)
