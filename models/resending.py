"""A resend request from the API: its job and its audit row, committed together."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.jobs import QUEUE_OF, RESEND_TASK
from models.base import Base, utcnow
from models.orders import OrderEvent
from models.outbox import OutboxJob


@dataclass(frozen=True)
class QueuedJob:
    id: int
    task: str
    args: list[Any]
    queue: str


def _resend_statements() -> tuple[sa.Insert, sa.Insert]:
    """Built once: plain Core statements with bound parameters compile once and are only bound after."""
    jobs, audit = (Base.metadata.tables[m.__tablename__] for m in (OutboxJob, OrderEvent))

    def param(table: sa.Table, name: str) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=table.c[name].type)

    job = sa.insert(jobs).values({**{name: param(jobs, name) for name in ("task", "args", "queue", "created_at")},
                                  "attempts": 0})
    event = sa.insert(audit).values(
        {name: param(audit, name) for name in ("order_id", "kind", "actor", "detail", "created_at")})
    return job, event


_RESEND_JOB, _RESEND_AUDIT = _resend_statements()
_RESEND_JOB_ID = _RESEND_JOB.returning(_RESEND_JOB.table.c.id)
_RESEND_BOTH = sa.select(_RESEND_JOB_ID.cte("job").c.id).add_cte(_RESEND_AUDIT.cte("audit"))


def request_resend(conn: sa.Connection, order_id: int, identifier: str, *, by: str) -> QueuedJob:
    """Queue the confirmation resend and its audit row atomically; the caller checked access and status.

    On PostgreSQL this is ONE statement (two inserts in CTEs) on an autocommit connection: a single
    statement is its own transaction, so the job and the audit row commit together in one round trip.
    SQLite has no INSERT in a CTE: there the two inserts run in one transaction.
    """
    now = utcnow()
    args: list[Any] = [identifier, by]
    queue = QUEUE_OF[RESEND_TASK]
    params = {"task": RESEND_TASK, "args": args, "queue": queue, "created_at": now, "order_id": order_id,
              "kind": "resend-requested", "actor": by, "detail": {}}
    if conn.dialect.name == "postgresql":
        job_id = conn.execute(_RESEND_BOTH, params).scalar_one()
    else:  # within the caller's transaction when it has one (an Idempotency-Key's answer joins it)
        with nullcontext() if conn.in_transaction() else conn.begin():
            job_id = conn.scalar(_RESEND_JOB_ID, params)
            conn.execute(_RESEND_AUDIT, params)
    assert job_id is not None
    return QueuedJob(int(job_id), RESEND_TASK, args, queue)
