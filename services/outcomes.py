"""What one send did to each delivery, recorded: sent, a retry scheduled as a job, or failed.

In a worker the connection commits asynchronously (models.db.use_asynchronous_commit): the commit
of 'sent' right after the server's acceptance is the window in which a kill sends an email twice,
and a database crash that loses such a commit costs at most the same duplicate.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.jobs import SEND_DELIVERY_TASK
from models.base import utcnow
from models.db import autocommit
from models.deliveries import DeliveryState, EmailDelivery
from models.history import record
from models.orders import Order, OrderEvent
from models.outbox import enqueue_job
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
# parameters worked out before sending: one round trip, an asynchronous commit, nothing in between.
_deliveries = cast(sa.Table, EmailDelivery.__table__)
_sent = (sa.update(_deliveries).where(_deliveries.c.id == sa.bindparam("delivery_id", type_=sa.Integer))
         .values(state=DeliveryState.SENT, sent_at=sa.func.now(), updated_at=sa.func.now(), last_error=sa.null())
         .returning(_deliveries.c.order_id).cte("sent"))
_SENT = sa.insert(cast(sa.Table, OrderEvent.__table__)).from_select(
    ["order_id", "kind", "actor", "detail", "created_at"],
    sa.select(_sent.c.order_id, sa.literal("email-sent"), sa.null(),
              sa.bindparam("detail", type_=sa.JSON), sa.func.now()))


def sent_params(delivery: EmailDelivery) -> dict[str, Any]:
    """What the 'sent' statement needs, worked out before the server is asked."""
    d = delivery
    detail = {"email_kind": d.kind.value, "recipient": d.recipient, "batch": d.batch, "message_id": d.message_id}
    return {"delivery_id": d.id, "detail": detail}


def commit_sent(session: Session, delivery: EmailDelivery, order: Order, params: dict[str, Any] | None,
                result: Sent) -> None:
    """Record the server's acceptance: with `params` (PostgreSQL) as one statement, else in a transaction."""
    if params is not None and not _hooked(session, order):
        conn = session.get_bind()
        assert isinstance(conn, sa.Connection)  # claimed() binds the session to its one connection
        with autocommit(conn):
            conn.execute(_SENT, params)
        now = utcnow()
        for name, value in (("state", DeliveryState.SENT), ("sent_at", now), ("updated_at", now), ("last_error", None)):
            set_committed_value(delivery, name, value)  # what the statement wrote, without a reload
    else:
        with session.begin():
            delivery.state, delivery.sent_at, delivery.last_error = DeliveryState.SENT, utcnow(), None
            delivery.updated_at = delivery.sent_at
            record(session, order, "email-sent", email_kind=delivery.kind.value, recipient=delivery.recipient,
                   batch=delivery.batch, message_id=delivery.message_id)
            notify(session, order.event_id, "email.sent", _email_data(order, delivery, None))
    result.outcomes[delivery.id] = Outcome.SENT
    log.info("order %s: %s sent to %s", order.identifier, delivery.kind.value, delivery.recipient)


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


def _hooked(session: Session, order: Order) -> bool:
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
