"""A resend request from the API: its job and its audit row, committed together; a request made
while the order's previous resend still waits joins that one instead of queueing another."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.jobs import QUEUE_OF, RESEND_TASK, job_id_of
from core.tracing import current_traceparent
from models.base import Base, utcnow
from models.orders import OrderEvent
from models.outbox import OutboxJob

REQUESTED, JOINED = "resend-requested", "resend-joined"
# The worker's marks: the batch a resend job chose, or the later batch it joined.
QUEUED_BATCH, MERGED_BATCH = "resend-queued", "resend-merged"


@dataclass(frozen=True)
class QueuedJob:
    """The job a request queued, or (`joined`) the waiting one it joined: nothing new to publish."""

    id: int
    task: str
    args: list[Any]
    queue: str
    joined: bool = False
    trace_context: str | None = None


JOB_COLUMNS = ("task", "args", "queue", "created_at", "trace_context")


def _resend_statements() -> tuple[sa.Insert, sa.Select[Any], sa.Insert, sa.Select[Any]]:
    """Built once: plain Core statements with bound parameters compile once and are only bound after."""
    jobs, audit = (Base.metadata.tables[m.__tablename__] for m in (OutboxJob, OrderEvent))

    def param(table: sa.Table, name: str) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=table.c[name].type)

    job = sa.insert(jobs).values({**{name: param(jobs, name) for name in JOB_COLUMNS}, "attempts": 0})
    # Waiting: not done and nobody running it (queued, held back, or given back for a retry).
    waiting = (sa.select(jobs.c.id).where(
        jobs.c.task == RESEND_TASK, jobs.c.done_at.is_(None), jobs.c.claimed_by.is_(None),
        jobs.c.args[0].as_string() == sa.bindparam("identifier", type_=sa.String))
        .order_by(jobs.c.id).limit(1))
    audit_columns = ("order_id", "actor", "detail", "created_at")
    event = sa.insert(audit).values({**{name: param(audit, name) for name in audit_columns},
                                     "kind": param(audit, "kind")})
    # PostgreSQL: ONE statement. The job is inserted only if none waits; the audit row says which.
    found = waiting.cte("waiting")
    some_waiting = sa.exists(sa.select(found.c.id))
    columns = [sa.bindparam(n, type_=jobs.c[n].type) for n in JOB_COLUMNS]
    new_job = (sa.insert(jobs).from_select([*JOB_COLUMNS, "attempts"],
                                           sa.select(*columns, sa.literal(0)).where(~some_waiting))
               .returning(jobs.c.id).cte("job"))
    kind = sa.case((some_waiting, JOINED), else_=REQUESTED)
    audited = sa.insert(audit).values({**{n: param(audit, n) for n in audit_columns}, "kind": kind}).cte("audit")
    both = sa.select(sa.select(new_job.c.id).scalar_subquery().label("job_id"),
                     sa.select(found.c.id).scalar_subquery().label("joined")).add_cte(audited)
    return job.returning(jobs.c.id), waiting, event, both


_RESEND_JOB_ID, _WAITING, _RESEND_AUDIT, _RESEND_OR_JOIN = _resend_statements()


def request_resend(conn: sa.Connection, order_id: int, identifier: str, *, by: str) -> QueuedJob:
    """Queue the confirmation resend and its audit row atomically, or join the one still waiting;
    the caller checked access and status.

    On PostgreSQL this is ONE statement (CTEs) on an autocommit connection: a single statement is its
    own transaction, so the job and the audit row commit together in one round trip. SQLite has no
    INSERT in a CTE: there the statements run in one transaction (which takes SQLite's write lock
    at BEGIN, so two requests cannot both miss the waiting job). On PostgreSQL two requests racing
    past each other may both queue a job; the worker's join (`joined_batch`) still sends once.
    """
    now = utcnow()
    args: list[Any] = [identifier, by]
    queue = QUEUE_OF[RESEND_TASK]
    trace_context = current_traceparent()
    params = {"task": RESEND_TASK, "args": args, "queue": queue, "created_at": now, "order_id": order_id,
              "identifier": identifier, "actor": by, "detail": {}, "trace_context": trace_context}
    if conn.dialect.name == "postgresql":
        row = conn.execute(_RESEND_OR_JOIN, params).one()
        job_id, joined = row.job_id, row.joined
    else:  # within the caller's transaction when it has one (an Idempotency-Key's answer joins it)
        with nullcontext() if conn.in_transaction() else conn.begin():
            joined = conn.scalar(_WAITING, params)
            job_id = None if joined is not None else conn.scalar(_RESEND_JOB_ID, params)
            conn.execute(_RESEND_AUDIT, {**params, "kind": JOINED if joined is not None else REQUESTED})
    if joined is not None:
        return QueuedJob(int(joined), RESEND_TASK, args, queue, joined=True)
    assert job_id is not None
    return QueuedJob(int(job_id), RESEND_TASK, args, queue, trace_context=trace_context)


def joined_batch(session: Session, order_id: int, job_key: str | None) -> str | None:
    """The resend batch another job of this order started after this job was requested: its
    emails were chosen after the request, so sending them again would only send a second copy."""
    requested = _requested_at(session, job_key)
    if requested is None:
        return None
    detail = session.scalar(sa.select(OrderEvent.detail).where(
        OrderEvent.order_id == order_id, OrderEvent.kind == QUEUED_BATCH, OrderEvent.created_at >= requested,
    ).order_by(OrderEvent.id).limit(1))
    return str(detail["batch"]) if detail and "batch" in detail else None


def _requested_at(session: Session, job_key: str | None) -> datetime | None:
    if not job_key:
        return None
    job_id = job_id_of(job_key)
    where = OutboxJob.id == job_id if job_id is not None else OutboxJob.external_id == job_key
    return session.scalar(sa.select(OutboxJob.created_at).where(where))
