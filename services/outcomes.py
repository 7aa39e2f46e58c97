"""What one send did to each delivery, recorded: sent, a retry scheduled as a job, or failed.

In a worker the connection commits asynchronously (models.db.use_asynchronous_commit), except the
record of 'sent' right after the server's acceptance: that commit is the window in which a kill
sends an email twice, so it waits for the WAL flush and outlives a database crash, and when the
database went away before it, the worker keeps the fact and records it once the database answers.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.jobs import SEND_DELIVERY_TASK
from models.base import UTCDateTime, utcnow
from models.db import autocommit
from models.deliveries import DeliveryState, EmailDelivery
from models.history import record
from models.leases import DURABLE, LEASE_HOLDS, WAIT_FOR_DATABASE, Lease, lease_params
from models.orders import Order, OrderEvent
from models.outbox import enqueue_job
from models.reconnect import database_gone, on_fresh_connection, retry_while_gone
from models.webhooks import listens, notify, order_data
from services.smtp import DeliveryError

log = logging.getLogger("ticketq.delivery")

MAX_SEND_ATTEMPTS = 160
SEND_BACKOFF_BASE, SEND_BACKOFF_CAP = 2.0, 600.0


class Outcome(enum.StrEnum):
    SENT = "sent"
    DONE = "done"  # sent or failed before: nothing to do
    BUSY = "busy"  # another live worker is sending it
    NEEDS_DOCUMENTS = "needs-documents"
    RETRY = "retry"
    FAILED = "failed"


@dataclass
class Sent:
    """What one pass did: the outcome of each delivery, and the retry jobs it scheduled."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    retries: list[int] = field(default_factory=list)

    def ids(self, outcome: Outcome) -> list[int]:
        return [i for i, o in self.outcomes.items() if o is outcome]


# Acceptance -> this commit is the window in which a kill sends an email twice. On PostgreSQL it is
# one statement (the record and its audit row) in autocommit on the claimed connection, with its
# parameters worked out before sending: one round trip, nothing in between. It is fenced (it records
# nothing once the run's lease is gone) and DURABLE (a crash that lost it would send the email again).
_deliveries = cast(sa.Table, EmailDelivery.__table__)
_sent = (sa.update(_deliveries).where(_deliveries.c.id == sa.bindparam("delivery_id", type_=sa.Integer),
                                      _deliveries.c.state != DeliveryState.SENT, LEASE_HOLDS, DURABLE)
         .values(state=DeliveryState.SENT, sent_at=sa.func.now(), updated_at=sa.func.now(), last_error=sa.null())
         .returning(_deliveries.c.order_id).cte("sent"))
_events = cast(sa.Table, OrderEvent.__table__)
_SENT = sa.insert(_events).from_select(
    ["order_id", "kind", "actor", "detail", "created_at"],
    sa.select(_sent.c.order_id, sa.literal("email-sent"), sa.null(),
              sa.bindparam("detail", type_=sa.JSON), sa.func.now())).returning(_events.c.id)
_SENT_PORTABLE = (sa.update(_deliveries).where(_deliveries.c.id == sa.bindparam("delivery_id", type_=sa.Integer),
                                               LEASE_HOLDS)
                  .values(state=DeliveryState.SENT, sent_at=sa.bindparam("now", type_=UTCDateTime),
                          updated_at=sa.bindparam("now", type_=UTCDateTime), last_error=sa.null()))


def sent_params(delivery: EmailDelivery, lease: Lease | None = None) -> dict[str, Any]:
    """What the 'sent' statement needs, worked out before the server is asked."""
    d = delivery
    detail = {"email_kind": d.kind.value, "recipient": d.recipient, "batch": d.batch, "message_id": d.message_id}
    return {"delivery_id": d.id, "detail": detail, **lease_params(lease)}


def commit_sent(session: Session, delivery: EmailDelivery, order: Order, params: dict[str, Any] | None,
                result: Sent, lease: Lease | None = None) -> None:
    """Record the server's acceptance: with `params` (PostgreSQL) as one statement, else in a transaction
    (also where a webhook listens for email.sent: its notification commits with the record).

    If the database went away meanwhile, the fact is kept and the record retried with backoff until
    it answers (within the run's time: `lease.deadline`); then the original error is raised, so the
    run ends and its job is given back for the rest of the batch.
    """
    if params is None or email_sent_hooked(session, order):
        recorded = _commit_portable(session, delivery, order, lease)
    else:
        conn = session.get_bind()
        assert isinstance(conn, sa.Connection)  # claimed() binds the session to its one connection
        if lease is not None:
            params["lease_now"] = utcnow()  # the lease judged at the record, not before the send
        try:
            with autocommit(conn):
                recorded = conn.execute(_SENT, params).first() is not None
        except sa.exc.DBAPIError as exc:
            if not database_gone(exc):
                raise
            _record_after_outage(conn.engine, delivery, order, params, lease)
            raise
        now = utcnow()
        if recorded:
            for name, value in (("state", DeliveryState.SENT), ("sent_at", now), ("updated_at", now),
                                ("last_error", None)):
                set_committed_value(delivery, name, value)  # what the statement wrote, without a reload
    if not recorded:
        result.outcomes[delivery.id] = Outcome.BUSY
        log.warning("order %s: %s to %s accepted by the server after this run lost its lease (%s); not recorded "
                    "by this run", order.identifier, delivery.kind.value, delivery.recipient, lease)
        return
    result.outcomes[delivery.id] = Outcome.SENT
    log.info("order %s: %s sent to %s", order.identifier, delivery.kind.value, delivery.recipient)


def _commit_portable(session: Session, delivery: EmailDelivery, order: Order, lease: Lease | None) -> bool:
    with session.begin():
        now = utcnow()
        updated = session.execute(_SENT_PORTABLE, {"delivery_id": delivery.id, "now": now, **lease_params(lease)})
        if not getattr(updated, "rowcount", 0):
            return False
        for name, value in (("state", DeliveryState.SENT), ("sent_at", now), ("updated_at", now), ("last_error", None)):
            set_committed_value(delivery, name, value)
        record(session, order, "email-sent", email_kind=delivery.kind.value, recipient=delivery.recipient,
               batch=delivery.batch, message_id=delivery.message_id)
        notify(session, order.event_id, "email.sent", _email_data(order, delivery, None))
    return True


def _record_after_outage(engine: sa.Engine, delivery: EmailDelivery, order: Order, params: dict[str, Any],
                         lease: Lease | None) -> None:
    """The server accepted the email and the database went away before its record: retry the record
    on new connections until the database answers, or log the fact that is lost (the run's time is up)."""
    deadline = lease.deadline if lease is not None else time.monotonic() + WAIT_FOR_DATABASE
    what = f"order {order.identifier}: recording {delivery.kind.value} to {delivery.recipient} as sent"
    params = {**params, **lease_params(lease)}  # the fence judged now, not when the email left
    try:
        recorded = retry_while_gone(lambda: on_fresh_connection(
            engine, lambda conn: conn.execute(_SENT, params).first() is not None), deadline, what)
    except sa.exc.DBAPIError:
        log.error("%s: gave up, the database did not answer in time; the server accepted it (Message-ID %s), "
                  "a later run will send it again", what, delivery.message_id)
        return
    log.warning("%s: %s once the database answered again; this run ends and gives its job back", what,
                "recorded" if recorded else "not recorded (recorded before, or the lease is gone)")


def finish_unsent(session: Session, delivery: EmailDelivery, order: Order, error: DeliveryError,
                  result: Sent) -> None:
    """A delivery the server did not take: a temporary failure is retried later as a job written in the
    caller's transaction (until MAX_SEND_ATTEMPTS); a permanent one is failed."""
    if error.temporary and delivery.attempts < MAX_SEND_ATTEMPTS:
        delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.QUEUED, error.reply, utcnow()
        delay = send_backoff(delivery.attempts)
        job = enqueue_job(session, SEND_DELIVERY_TASK, [delivery.id], run_after=utcnow() + timedelta(seconds=delay))
        result.retries.append(job.id)
        log.info("order %s: %s to %s deferred %.0f s: %s", order.identifier, delivery.kind.value,
                 delivery.recipient, delay, error.reply)
        result.outcomes[delivery.id] = Outcome.RETRY
    else:
        fail_delivery(session, delivery, order, error.reply)
        result.outcomes[delivery.id] = Outcome.FAILED


def send_backoff(attempts: int) -> float:
    """Mail servers retry for days; we keep trying at the cap for at least 12 hours (about 19 on
    average), so an SMTP outage longer than a few minutes does not fail queued confirmations."""
    ceiling = min(SEND_BACKOFF_CAP, SEND_BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def fail_delivery(session: Session, delivery: EmailDelivery, order: Order, reason: str) -> None:
    delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.FAILED, reason[:2000], utcnow()
    record(session, order, "email-failed", email_kind=delivery.kind.value, recipient=delivery.recipient,
           batch=delivery.batch, error=reason[:500])
    notify(session, order.event_id, "email.failed", _email_data(order, delivery, reason[:500]))
    log.warning("order %s: %s to %s failed: %s", order.identifier, delivery.kind.value, delivery.recipient, reason)


def email_sent_hooked(session: Session, order: Order) -> bool:
    """Whether a webhook of the order's event wants email.sent: then 'sent' is recorded in a transaction
    with its notification instead of as the one fast statement. Asked once per session (one send)."""
    known: dict[int, bool] = session.info.setdefault("email_sent_hooked", {})
    if order.event_id not in known:
        with session.begin():
            known[order.event_id] = listens(session, order.event_id, "email.sent")
    return known[order.event_id]


def _email_data(order: Order, delivery: EmailDelivery, reply: str | None) -> dict[str, Any]:
    return order_data(order.event_id, order.identifier, order.status.value, kind=delivery.kind.value,
                      recipient=delivery.recipient, reply=reply)
