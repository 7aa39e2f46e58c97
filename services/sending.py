"""Sending an order's deliveries: claim them, mark them 'sending' with their messages, then send each
over the process's one SMTP connection and record what happened, queued -> sending -> sent | failed,
at most once per success."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from core.settings import settings
from models.base import utcnow
from models.db import autocommit
from models.deliveries import DeliveryState, EmailDelivery
from models.leases import Lease, LeaseLost, lease_holds, running_lease
from models.orders import Order
from models.status import is_resendable
from services.claims import claimed
from services.messages import (
    WITH_CALENDAR,
    DocumentsMissing,
    compose,
    event_ics,
    message_id_for,
    wire_message,
)
from services.outcomes import Outcome, Sent, commit_sent, email_sent_hooked, fail_delivery, finish_unsent, sent_params
from services.presenters import order_context
from services.recipients import CANCELLATION_BATCH
from services.smtp import DeliveryError, Outgoing, smtp_client
from services.storage import DocumentKey

UNSENT = (DeliveryState.QUEUED, DeliveryState.SENDING)
# SQLite has no advisory locks: a 'sending' row younger than this is taken to have a live sender.
SENDING_LEASE = timedelta(seconds=120)
INTERRUPTED = "interrupted before the server answered"

_deliveries = cast(sa.Table, EmailDelivery.__table__)
_CLAIMED_ROWS = (sa.select(EmailDelivery).where(EmailDelivery.id.in_(sa.bindparam("ids", expanding=True)),
                                                EmailDelivery.order_id == sa.bindparam("order_id", type_=sa.Integer))
                 .order_by(EmailDelivery.id).with_for_update())


@dataclass(frozen=True)
class Prepared:
    """A delivery marked 'sending' with its message; holding the rows keeps them in the session."""

    delivery: EmailDelivery
    order: Order
    message: Outgoing
    message_id: str

    @property
    def delivery_id(self) -> int:
        return self.delivery.id


def send_deliveries(factory: sessionmaker[Session], order: Order, ids: Sequence[int],
                    documents: Mapping[DocumentKey, bytes], smtp_url: str) -> Sent:
    """Send each delivery of one order over the process's SMTP connection; one outcome per id.

    Each record is committed 'sent' right after the server accepted it, in its own short
    transaction with nothing else in it: a worker killed in between is the only way one email goes
    out twice, and then with the same Message-ID. Run as a job, the lease is checked right before each
    email and fences its record: a run whose lease was taken back sends and records nothing more. A
    temporary failure schedules the delivery's retry as a job in the same transaction; once the server
    is unreachable, the rest of the batch is not tried now but scheduled the same way.
    """
    result = Sent()
    with claimed(factory, ids) as (session, ours):
        result.outcomes.update({i: Outcome.BUSY for i in ids if i not in ours})
        with session.begin():
            prepared = _prepare_all(session, order, ours, documents, result.outcomes)
        if prepared:
            email_sent_hooked(session, order)  # asked before any send: the record after it needs no lookup
        client = smtp_client(smtp_url)
        unreachable: DeliveryError | None = None
        postgres = session.get_bind().dialect.name == "postgresql"
        lease = running_lease.get()
        for index, item in enumerate(prepared):
            error = unreachable
            params = sent_params(item.delivery, lease) if postgres else None
            if error is None:  # outside the handlers below: a lost lease or database writes nothing more
                _check_lease(session, lease, postgres)
            try:
                if error is None:
                    client.send(item.message, {"ticketq.order": item.order.identifier,
                                               "ticketq.email.kind": item.delivery.kind.value,
                                               "ticketq.delivery": item.delivery.id})
            except DeliveryError as exc:
                error = exc
                if exc.unreachable:
                    unreachable = exc
            except BaseException:  # a time limit or a bug: never leave a row 'sending' for a live job
                client.drop()
                with session.begin():
                    for rest in prepared[index:]:
                        finish_unsent(session, rest.delivery, rest.order, DeliveryError(INTERRUPTED, temporary=True),
                                      result)
                raise
            if error is None:
                commit_sent(session, item.delivery, item.order, params, result, lease)
            else:
                _check_lease(session, lease, postgres)  # its retry job must not race the lease's new holder
                with session.begin():
                    finish_unsent(session, item.delivery, item.order, error, result)
    return result


def _check_lease(session: Session, lease: Lease | None, postgres: bool) -> None:
    """Right before an email leaves: is the job's lease still this run's? (None: not run as a job.)"""
    if lease is None:
        return
    if postgres:
        conn = session.get_bind()
        assert isinstance(conn, sa.Connection)
        with autocommit(conn):
            holds = lease_holds(conn, lease)
    else:
        with session.begin():
            holds = lease_holds(session, lease)
    if not holds:
        raise LeaseLost(f"job {lease.job_id}: lease of claim {lease.attempt} by {lease.holder} is gone")


def _prepare_all(session: Session, order: Order, ids: list[int], documents: Mapping[DocumentKey, bytes],
                 outcomes: dict[int, Outcome]) -> list[Prepared]:
    rows = session.scalars(_CLAIMED_ROWS, {"ids": ids, "order_id": order.id}).all() if ids else []
    outcomes.update({i: Outcome.DONE for i in ids})  # unknown ids (a truncated table) are done too
    context = order_context(order)
    ics = event_ics(order) if any(r.kind in WITH_CALENDAR for r in rows) else b""  # one per order
    prepared = []
    for delivery in rows:
        result = _prepare(session, delivery, order, documents, context, ics)
        if isinstance(result, Outcome):
            outcomes[delivery.id] = result
        else:
            prepared.append(result)
    _mark_sending(session, prepared)
    return prepared


def _mark_sending(session: Session, prepared: list[Prepared]) -> None:
    """ONE statement marks every prepared delivery 'sending' with its Message-ID (no unit of work)."""
    if not prepared:
        return
    now, table = utcnow(), _deliveries
    ids = {item.delivery.id: item.message_id for item in prepared}
    session.execute(table.update().where(table.c.id.in_(list(ids))).values(
        state=DeliveryState.SENDING, updated_at=now, attempts=table.c.attempts + 1,
        message_id=sa.case(ids, value=table.c.id)))
    for item in prepared:  # what the statement wrote, without a reload
        d = item.delivery
        for name, value in (("state", DeliveryState.SENDING), ("message_id", item.message_id), ("updated_at", now),
                            ("attempts", d.attempts + 1)):
            set_committed_value(d, name, value)


def _prepare(session: Session, delivery: EmailDelivery, order: Order, documents: Mapping[DocumentKey, bytes],
             context: dict[str, Any], ics: bytes) -> Outcome | Prepared:
    if delivery.state in (DeliveryState.SENT, DeliveryState.FAILED):
        return Outcome.DONE
    now = utcnow()
    if (delivery.state is DeliveryState.SENDING and session.get_bind().dialect.name != "postgresql"
            and delivery.updated_at > now - SENDING_LEASE):
        return Outcome.BUSY
    if delivery.batch != CANCELLATION_BATCH and not is_resendable(order.status):  # the organizers' notice too
        fail_delivery(session, delivery, order, f"order is {order.status.value}; email not sent")
        return Outcome.FAILED
    message_id = delivery.message_id or message_id_for(order.identifier, delivery.id, settings.mail_from)
    try:
        message = wire_message(compose(order, delivery, message_id, documents, context, ics))
    except DocumentsMissing:
        return Outcome.NEEDS_DOCUMENTS
    except DeliveryError as exc:  # an unusable address: nothing will ever send it
        fail_delivery(session, delivery, order, exc.reply)
        return Outcome.FAILED
    return Prepared(delivery, order, message, message_id)
