"""Recording a delivery: who gets which email (one row each), and sending them queued -> sending ->
sent | failed, at most once per success.

A PostgreSQL advisory lock per delivery, held on the one connection that does the whole send,
tells a live duplicate job (skip) from a job redelivered after its worker died mid-send (send
again). Several deliveries of an order go out in one pass over the order the job loaded once.

In a worker the connection commits asynchronously (models.db.use_asynchronous_commit): the commit
of 'sent' right after the server's acceptance is the window in which a kill sends an email twice,
and a database crash that loses such a commit costs at most the same duplicate.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from core.jobs import SEND_DELIVERY_TASK
from core.settings import settings
from models.base import utcnow
from models.db import autocommit
from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from models.history import record
from models.orders import Order, OrderEvent
from models.outbox import enqueue_job
from models.status import is_resendable
from models.users import normalize_email
from services.messages import WITH_DOCUMENTS, DocumentsMissing, compose, event_ics, message_id_for, wire_message
from services.presenters import buyer_of, order_context
from services.smtp import DeliveryError, Outgoing, smtp_client
from services.storage import DocumentKey

log = logging.getLogger("ticketq.delivery")

CONFIRMATION_BATCH = "confirmation"

CANCELLATION_BATCH = "cancellation"

RESEND_PREFIX = "resend-"

UNSENT = (DeliveryState.QUEUED, DeliveryState.SENDING)
ADVISORY_CLASS = 0x7471  # "tq": the namespace of our PostgreSQL advisory locks
# SQLite has no advisory locks: a 'sending' row younger than this is taken to have a live sender.
SENDING_LEASE = timedelta(seconds=120)
INTERRUPTED = "interrupted before the server answered"
MAX_SEND_ATTEMPTS = 160
SEND_BACKOFF_BASE, SEND_BACKOFF_CAP = 2.0, 600.0


def confirmation_recipients(session: Session, order: Order, *, organizers: bool) -> list[tuple[EmailKind, str]]:
    """The buyer; each distinct attendee address other than the buyer's; each organizer address once."""
    buyer = normalize_email(buyer_of(order)[1])
    plan: list[tuple[EmailKind, str]] = [(EmailKind.CONFIRMATION_BUYER, buyer)] if buyer else []
    seen = {buyer}
    for attendee in order.attendees:
        address = normalize_email(attendee.email or "")
        if address and address not in seen:
            seen.add(address)
            plan.append((EmailKind.CONFIRMATION_ATTENDEE, address))
    if organizers:
        # The order was loaded with its event's roles and their users (load_full_order): no query here.
        for address in dict.fromkeys(sorted(normalize_email(r.user.email) for r in order.event.roles)):
            plan.append((EmailKind.ORGANIZER_NOTIFICATION, address))
    return plan

def ensure_deliveries(
    session: Session, order: Order, batch: str, plan: list[tuple[EmailKind, str]], *, requested_by: str | None = None
) -> list[EmailDelivery]:
    """Insert-if-absent on (order, batch, kind, recipient): a job that runs twice records each email once.
    One multi-row INSERT; the ids follow the plan's order, as its VALUES do."""
    if plan:
        now = utcnow()
        rows = [{"order_id": order.id, "batch": batch, "kind": kind, "recipient": recipient,
                 "state": DeliveryState.QUEUED, "attempts": 0, "requested_by": requested_by,
                 "created_at": now, "updated_at": now} for kind, recipient in plan]
        session.execute(_RECORD[session.get_bind().dialect.name], rows)
    return batch_deliveries(session, order, batch)

# Built once (bound parameters): executing them again skips building them and SQLAlchemy's cache key walk.
_deliveries = cast(sa.Table, EmailDelivery.__table__)
_RECORD = {"postgresql": postgresql.insert(_deliveries).on_conflict_do_nothing(),  # ON CONFLICT is per dialect
           "sqlite": sqlite.insert(_deliveries).on_conflict_do_nothing()}
_BATCH = (sa.select(EmailDelivery).where(EmailDelivery.order_id == sa.bindparam("order_id", type_=sa.Integer),
                                         EmailDelivery.batch == sa.bindparam("batch", type_=sa.String))
          .order_by(EmailDelivery.id))
_CLAIMED_ROWS = (sa.select(EmailDelivery).where(EmailDelivery.id.in_(sa.bindparam("ids", expanding=True)),
                                                EmailDelivery.order_id == sa.bindparam("order_id", type_=sa.Integer))
                 .order_by(EmailDelivery.id).with_for_update())


def batch_deliveries(session: Session, order: Order, batch: str) -> list[EmailDelivery]:
    return list(session.scalars(_BATCH, {"order_id": order.id, "batch": batch}))

def next_resend_batch(session: Session, order: Order) -> str:
    batches = session.scalars(sa.select(EmailDelivery.batch).where(
        EmailDelivery.order_id == order.id, EmailDelivery.batch.like(f"{RESEND_PREFIX}%")).distinct())
    numbers = [int(b.removeprefix(RESEND_PREFIX)) for b in batches if b.removeprefix(RESEND_PREFIX).isdigit()]
    return f"{RESEND_PREFIX}{max(numbers, default=0) + 1}"


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
    message: Outgoing
    message_id: str

    @property
    def delivery_id(self) -> int:
        return self.delivery.id

    def sent_params(self) -> dict[str, Any]:
        """What the `sent` statement needs, worked out before the server is asked (see _SENT)."""
        d = self.delivery
        detail = {"email_kind": d.kind.value, "recipient": d.recipient, "batch": d.batch, "message_id": d.message_id}
        return {"delivery_id": d.id, "detail": detail}


# The advisory locks of a set of deliveries, one statement each way (PostgreSQL only).
_ids = sa.func.unnest(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Integer))).column_valued("id")
_TRY_LOCKS = sa.select(_ids).where(sa.func.pg_try_advisory_lock(sa.literal(ADVISORY_CLASS), _ids, type_=sa.Boolean))
_UNLOCK = sa.select(sa.func.pg_advisory_unlock(sa.literal(ADVISORY_CLASS), _ids, type_=sa.Boolean))


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
        if postgres and ours:  # session locks, not a transaction's: taken in autocommit, one round trip
            with autocommit(conn):
                ours = sorted(conn.scalars(_TRY_LOCKS, {"ids": ours}))
        try:
            with Session(bind=conn, expire_on_commit=False) as session:
                yield session, ours
        finally:
            if postgres and ours:
                _unlock(conn, ours)


def _unlock(conn: sa.Connection, ids: list[int]) -> None:
    try:
        conn.rollback()
        with autocommit(conn):
            conn.execute(_UNLOCK, {"ids": ids})
    except Exception:  # never hand a connection that may still hold a lock back to the pool
        log.exception("could not release the locks of deliveries %s; dropping the connection", ids)
        conn.invalidate()


def send_deliveries(factory: sessionmaker[Session], order: Order, ids: Sequence[int],
                    documents: Mapping[DocumentKey, bytes], smtp_url: str) -> Sent:
    """Send each delivery of one order over the process's SMTP connection; one outcome per id.

    Each record is committed 'sent' right after the server accepted it, in its own short
    transaction with nothing else in it: a worker killed in between is the only way one email goes
    out twice, and then with the same Message-ID. A temporary failure schedules the delivery's
    retry as a job in the same transaction; once the server is unreachable, the rest of the batch
    is not tried now but scheduled the same way.
    """
    result = Sent()
    with claimed(factory, ids) as (session, ours):
        result.outcomes.update({i: Outcome.BUSY for i in ids if i not in ours})
        with session.begin():
            prepared = _prepare_all(session, order, ours, documents, result.outcomes)
        client = smtp_client(smtp_url)
        unreachable: DeliveryError | None = None
        postgres = session.get_bind().dialect.name == "postgresql"
        for index, item in enumerate(prepared):
            error = unreachable
            params = item.sent_params() if postgres else None
            try:
                if error is None:
                    client.send(item.message)
            except DeliveryError as exc:
                error = exc
                if exc.unreachable:
                    unreachable = exc
            except BaseException:  # a time limit or a bug: never leave a row 'sending' for a live job
                client.drop()
                with session.begin():
                    for rest in prepared[index:]:
                        _finish(session, rest, DeliveryError(INTERRUPTED, temporary=True), result)
                raise
            if error is None:
                _commit_sent(session, item, params, result)
            else:
                with session.begin():
                    _finish(session, item, error, result)
    return result


# Acceptance -> this commit is the window in which a kill sends an email twice. On PostgreSQL it is
# one statement (the record and its audit row) in autocommit on the claimed connection, with its
# parameters worked out before sending: one round trip, an asynchronous commit, nothing in between.
_sent = (sa.update(_deliveries).where(_deliveries.c.id == sa.bindparam("delivery_id", type_=sa.Integer))
         .values(state=DeliveryState.SENT, sent_at=sa.func.now(), updated_at=sa.func.now(), last_error=sa.null())
         .returning(_deliveries.c.order_id).cte("sent"))
_SENT = sa.insert(cast(sa.Table, OrderEvent.__table__)).from_select(
    ["order_id", "kind", "actor", "detail", "created_at"],
    sa.select(_sent.c.order_id, sa.literal("email-sent"), sa.null(),
              sa.bindparam("detail", type_=sa.JSON), sa.func.now()))


def _commit_sent(session: Session, item: Prepared, params: dict[str, Any] | None, result: Sent) -> None:
    delivery, order = item.delivery, item.order
    if params is not None:
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
    result.outcomes[delivery.id] = Outcome.SENT
    log.info("order %s: %s sent to %s", order.identifier, delivery.kind.value, delivery.recipient)


@dataclass
class Sent:
    """What one pass did: the outcome of each delivery, and the retry jobs it scheduled."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    retries: list[int] = field(default_factory=list)

    def ids(self, outcome: Outcome) -> list[int]:
        return [i for i, o in self.outcomes.items() if o is outcome]


def _prepare_all(session: Session, order: Order, ids: list[int], documents: Mapping[DocumentKey, bytes],
                 outcomes: dict[int, Outcome]) -> list[Prepared]:
    rows = session.scalars(_CLAIMED_ROWS, {"ids": ids, "order_id": order.id}).all() if ids else []
    outcomes.update({i: Outcome.DONE for i in ids})  # unknown ids (a truncated table) are done too
    context = order_context(order)
    ics = event_ics(order) if any(r.kind in WITH_DOCUMENTS for r in rows) else b""  # one per order
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
    if delivery.kind is not EmailKind.CANCELLATION and not is_resendable(order.status):
        _fail(session, delivery, order, f"order is {order.status.value}; email not sent")
        return Outcome.FAILED
    message_id = delivery.message_id or message_id_for(order.identifier, delivery.id, settings.mail_from)
    try:
        message = wire_message(compose(order, delivery, message_id, documents, context, ics))
    except DocumentsMissing:
        return Outcome.NEEDS_DOCUMENTS
    except DeliveryError as exc:  # an unusable address: nothing will ever send it
        _fail(session, delivery, order, exc.reply)
        return Outcome.FAILED
    return Prepared(delivery, order, message, message_id)


def _finish(session: Session, item: Prepared, error: DeliveryError, result: Sent) -> None:
    delivery, order = item.delivery, item.order
    if error.temporary and delivery.attempts < MAX_SEND_ATTEMPTS:
        delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.QUEUED, error.reply, utcnow()
        delay = send_backoff(delivery.attempts)
        job = enqueue_job(session, SEND_DELIVERY_TASK, [delivery.id], run_after=utcnow() + timedelta(seconds=delay))
        result.retries.append(job.id)
        log.info("order %s: %s to %s deferred %.0f s: %s", order.identifier, delivery.kind.value,
                 delivery.recipient, delay, error.reply)
        result.outcomes[delivery.id] = Outcome.RETRY
    else:
        _fail(session, delivery, order, error.reply)
        result.outcomes[delivery.id] = Outcome.FAILED


def send_backoff(attempts: int) -> float:
    """Mail servers retry for days; we keep trying at the cap for at least 12 hours (about 19 on
    average), so an SMTP outage longer than a few minutes does not fail queued confirmations."""
    ceiling = min(SEND_BACKOFF_CAP, SEND_BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def _fail(session: Session, delivery: EmailDelivery, order: Order, reason: str) -> None:
    delivery.state, delivery.last_error, delivery.updated_at = DeliveryState.FAILED, reason[:2000], utcnow()
    record(session, order, "email-failed", email_kind=delivery.kind.value, recipient=delivery.recipient,
           batch=delivery.batch, error=reason[:500])
    log.warning("order %s: %s to %s failed: %s", order.identifier, delivery.kind.value, delivery.recipient, reason)
