"""Sending one delivery record: queued -> sending -> sent | failed, at most once per success.

A PostgreSQL advisory lock, held on the connection that does the whole send, tells a live
duplicate job (skip) from a job redelivered after its worker died mid-send (send again).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from models.ordering import record
from models.orders import Order
from models.status import is_resendable
from ticketq.settings import settings
from worker.emails import DocumentsMissing, compose
from worker.mail import DeliveryError, build_message, new_message_id, smtp_client
from worker.presenters import load_full_order

log = logging.getLogger("ticketq.delivery")

ADVISORY_CLASS = 0x7471  # "tq": the namespace of our PostgreSQL advisory locks
# SQLite has no advisory locks: a 'sending' row younger than this is taken to have a live sender.
SENDING_LEASE = timedelta(seconds=120)


class Outcome(enum.StrEnum):
    SENT = "sent"
    DONE = "done"  # sent or failed before: nothing to do
    BUSY = "busy"  # another live worker is sending it
    NEEDS_DOCUMENTS = "needs-documents"
    RETRY = "retry"
    FAILED = "failed"


@contextmanager
def claimed(factory: sessionmaker[Session], delivery_id: int) -> Iterator[Session | None]:
    """A session on ONE connection that holds the delivery's advisory lock until the send is over,
    or None when another live worker holds it.

    The lock dies with the connection, so a 'sending' row whose lock is free was left by a worker
    that died mid-send (resend: at-least-once), while a held lock means a live duplicate (skip).
    """
    engine: sa.Engine = factory.kw["bind"]
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            ours = bool(conn.scalar(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_CLASS, delivery_id))))
            conn.commit()
            if not ours:
                yield None
                return
        try:
            with Session(bind=conn, expire_on_commit=False) as session:
                yield session
        finally:
            if postgres:
                _unlock(conn, delivery_id)


def _unlock(conn: sa.Connection, delivery_id: int) -> None:
    try:
        conn.rollback()
        conn.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_CLASS, delivery_id)))
        conn.commit()
    except Exception:  # never hand a connection that may still hold the lock back to the pool
        log.exception("could not release the lock of delivery %s; dropping the connection", delivery_id)
        conn.invalidate()


def send_delivery(factory: sessionmaker[Session], delivery_id: int, smtp_url: str, *, final: bool) -> Outcome:
    """Send one logical email at most once per success: queued -> sending -> sent | failed.

    `final` says no retry is left, so a temporary failure marks the record failed.
    """
    with claimed(factory, delivery_id) as session:
        if session is None:
            return Outcome.BUSY
        with session.begin():
            prepared = _prepare(session, delivery_id)
        if not isinstance(prepared, tuple):
            return prepared
        identifier, message = prepared
        client = smtp_client(smtp_url)
        try:
            client.send(message)
        except DeliveryError as exc:
            return _record_failure(session, delivery_id, exc, final=final)
        except Exception as exc:  # a time limit, a bug: never leave the row 'sending' for a live job
            client.drop()
            _record_failure(session, delivery_id, DeliveryError(f"{type(exc).__name__}: {exc}", temporary=True),
                            final=final)
            raise
        with session.begin():
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
    order = load_full_order(session, Order.id == delivery.order_id)
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


def _record_failure(session: Session, delivery_id: int, exc: DeliveryError, *, final: bool) -> Outcome:
    with session.begin():
        delivery = session.get_one(EmailDelivery, delivery_id)
        if exc.temporary and not final:
            delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.QUEUED, exc.reply, utcnow()
            log.info("order %s: %s to %s deferred: %s", delivery.order.identifier, delivery.kind.value,
                     delivery.recipient, exc.reply)
            return Outcome.RETRY
        _fail(session, delivery, exc.reply)
        return Outcome.FAILED


def order_of_delivery(factory: sessionmaker[Session], delivery_id: int) -> tuple[str, str]:
    """(order identifier, batch) of a delivery record."""
    with factory() as session:
        row = session.execute(sa.select(Order.identifier, EmailDelivery.batch).join(EmailDelivery.order)
                              .where(EmailDelivery.id == delivery_id)).one()
        return row[0], row[1]
