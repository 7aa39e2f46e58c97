"""Sending delivery records: queued -> sending -> sent | failed, at most once per success.

A PostgreSQL advisory lock per delivery, held on the one connection that does the whole send,
tells a live duplicate job (skip) from a job redelivered after its worker died mid-send (send
again). Several deliveries of an order go out in one pass: one claim, one load, one commit.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from models.ordering import record
from models.orders import Order
from models.status import is_resendable
from ticketq.settings import settings
from worker.emails import WITH_DOCUMENTS, DocumentsMissing, compose, stored_documents
from worker.mail import DeliveryError, build_message, new_message_id, smtp_client
from worker.presenters import load_full_order
from worker.storage import DocumentKey

log = logging.getLogger("ticketq.delivery")

ADVISORY_CLASS = 0x7471  # "tq": the namespace of our PostgreSQL advisory locks
# SQLite has no advisory locks: a 'sending' row younger than this is taken to have a live sender.
SENDING_LEASE = timedelta(seconds=120)
INTERRUPTED = "interrupted before the server answered"


class Outcome(enum.StrEnum):
    SENT = "sent"
    DONE = "done"  # sent or failed before: nothing to do
    BUSY = "busy"  # another live worker is sending it
    NEEDS_DOCUMENTS = "needs-documents"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Prepared:
    """A delivery marked 'sending' with its message; holding the rows keeps them in the session."""

    delivery: EmailDelivery
    order: Order
    message: Message

    @property
    def delivery_id(self) -> int:
        return self.delivery.id


@contextmanager
def claimed(factory: sessionmaker[Session], ids: Sequence[int]) -> Iterator[tuple[Session, list[int]]]:
    """A session on ONE connection holding the advisory locks of the deliveries it could claim.

    The locks die with the connection, so a 'sending' row whose lock is free was left by a worker
    that died mid-send (resend: at-least-once), while a held lock means a live duplicate (skip).
    """
    engine: sa.Engine = factory.kw["bind"]
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        ours = sorted(set(ids))
        if postgres and ours:
            ours = sorted(conn.scalars(sa.text(
                "SELECT id FROM unnest(CAST(:ids AS integer[])) AS id WHERE pg_try_advisory_lock(:class, id)"
            ), {"ids": ours, "class": ADVISORY_CLASS}))
            conn.commit()
        try:
            with Session(bind=conn, expire_on_commit=False) as session:
                yield session, ours
        finally:
            if postgres and ours:
                _unlock(conn, ours)


def _unlock(conn: sa.Connection, ids: list[int]) -> None:
    try:
        conn.rollback()
        conn.execute(sa.text("SELECT pg_advisory_unlock(:class, id) FROM unnest(CAST(:ids AS integer[])) AS id"),
                     {"ids": ids, "class": ADVISORY_CLASS})
        conn.commit()
    except Exception:  # never hand a connection that may still hold a lock back to the pool
        log.exception("could not release the locks of deliveries %s; dropping the connection", ids)
        conn.invalidate()


def send_delivery(factory: sessionmaker[Session], delivery_id: int, smtp_url: str, *, final: bool) -> Outcome:
    """Send one delivery; `final` says no retry is left, so a temporary failure marks it failed."""
    return send_deliveries(factory, [delivery_id], smtp_url, final=final)[delivery_id]


def send_deliveries(
    factory: sessionmaker[Session], ids: Sequence[int], smtp_url: str, *, final: bool = False
) -> dict[int, Outcome]:
    """Send each delivery independently over the process's SMTP connection; one outcome per id.

    Each record is committed 'sent' right after the server accepted it: a worker killed in
    between is the only way one email goes out twice, and that window is one commit long.
    """
    outcomes: dict[int, Outcome] = {}
    with claimed(factory, ids) as (session, ours):
        outcomes.update({i: Outcome.BUSY for i in ids if i not in ours})
        with session.begin():
            prepared = _prepare_all(session, ours, outcomes)
        client = smtp_client(smtp_url)
        for index, item in enumerate(prepared):
            error: DeliveryError | None = None
            try:
                client.send(item.message)
            except DeliveryError as exc:
                error = exc
            except BaseException:  # a time limit or a bug: never leave a row 'sending' for a live job
                client.drop()
                with session.begin():
                    for rest in prepared[index:]:
                        _finish(session, rest, DeliveryError(INTERRUPTED, temporary=True), final)
                raise
            with session.begin():
                outcomes[item.delivery_id] = _finish(session, item, error, final)
    return outcomes


def _prepare_all(session: Session, ids: list[int], outcomes: dict[int, Outcome]) -> list[Prepared]:
    rows = session.scalars(sa.select(EmailDelivery).where(EmailDelivery.id.in_(ids))
                           .order_by(EmailDelivery.id).with_for_update()).all() if ids else []
    outcomes.update({i: Outcome.DONE for i in ids})  # unknown ids (a truncated table) are done too
    orders: dict[int, Order] = {}
    stored: dict[int, dict[DocumentKey, str]] = {}
    prepared = []
    for delivery in rows:
        if delivery.order_id not in orders:
            orders[delivery.order_id] = load_full_order(session, Order.id == delivery.order_id)
        order = orders[delivery.order_id]
        if delivery.kind in WITH_DOCUMENTS and order.id not in stored:
            stored[order.id] = stored_documents(session, order)
        result = _prepare(session, delivery, order, stored.get(order.id, {}))
        if isinstance(result, Outcome):
            outcomes[delivery.id] = result
        else:
            prepared.append(result)
    return prepared


def _prepare(session: Session, delivery: EmailDelivery, order: Order, stored: dict[DocumentKey, str]
             ) -> Outcome | Prepared:
    if delivery.state in (DeliveryState.SENT, DeliveryState.FAILED):
        return Outcome.DONE
    now = utcnow()
    if (delivery.state is DeliveryState.SENDING and session.get_bind().dialect.name != "postgresql"
            and delivery.updated_at > now - SENDING_LEASE):
        return Outcome.BUSY
    if delivery.kind is not EmailKind.CANCELLATION and not is_resendable(order.status):
        _fail(session, delivery, order, f"order is {order.status.value}; email not sent")
        return Outcome.FAILED
    message_id = delivery.message_id or new_message_id(settings.mail_from)
    try:
        message = build_message(compose(session, order, delivery, message_id, stored))
    except DocumentsMissing:
        return Outcome.NEEDS_DOCUMENTS
    except DeliveryError as exc:  # an unusable address: nothing will ever send it
        _fail(session, delivery, order, exc.reply)
        return Outcome.FAILED
    delivery.state, delivery.message_id, delivery.updated_at = DeliveryState.SENDING, message_id, now
    delivery.attempts += 1
    return Prepared(delivery, order, message)


def _finish(session: Session, item: Prepared, error: DeliveryError | None, final: bool) -> Outcome:
    delivery, order = item.delivery, item.order
    if error is None:
        delivery.state, delivery.sent_at, delivery.last_error = DeliveryState.SENT, utcnow(), None
        delivery.updated_at = delivery.sent_at
        record(session, order, "email-sent", email_kind=delivery.kind.value, recipient=delivery.recipient,
               batch=delivery.batch, message_id=delivery.message_id)
        log.info("order %s: %s sent to %s", order.identifier, delivery.kind.value, delivery.recipient)
        return Outcome.SENT
    if error.temporary and not final:
        delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.QUEUED, error.reply, utcnow()
        log.info("order %s: %s to %s deferred: %s", order.identifier, delivery.kind.value, delivery.recipient,
                 error.reply)
        return Outcome.RETRY
    _fail(session, delivery, order, error.reply)
    return Outcome.FAILED


def _fail(session: Session, delivery: EmailDelivery, order: Order, reason: str) -> None:
    delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.FAILED, reason[:2000], utcnow()
    record(session, order, "email-failed", email_kind=delivery.kind.value, recipient=delivery.recipient,
           batch=delivery.batch, error=reason[:500])
    log.warning("order %s: %s to %s failed: %s", order.identifier, delivery.kind.value, delivery.recipient, reason)


def order_of_delivery(factory: sessionmaker[Session], delivery_id: int) -> tuple[str, str]:
    """(order identifier, batch) of a delivery record."""
    with factory() as session:
        row = session.execute(sa.select(Order.identifier, EmailDelivery.batch).join(EmailDelivery.order)
                              .where(EmailDelivery.id == delivery_id)).one()
        return row[0], row[1]
