"""Jobs in PostgreSQL: written in the transaction that needs them, kept until their work is done.

Redis only carries a job; this table is its record. A row is unfinished while `done_at` is NULL:
`published_at` NULL means it is to be (re)sent to the broker once `run_after` has passed; a worker
that starts it takes a lease (`claimed_by`, `lease_until`) and ends it with `done_at`, or gives it
back with a later `run_after`. Beat's relay (services/relay.py) sends what is due and takes back
what a dead worker or an emptied broker lost, so a job is never stranded. The lease's marks
live in models/leases.py, the relay's queries in models/relaying.py.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.jobs import ORDERS_QUEUE, QUEUE_OF
from core.tracing import current_traceparent
from models.base import Base, UTCDateTime, utcnow


class OutboxJob(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(100))
    args: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    queue: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    run_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The task id of a job a producer sent straight to the broker, adopted when it started.
    external_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    # The W3C traceparent of the span that wrote the job (core/tracing.py): every send of it, the
    # relay's too, continues that trace. NULL when tracing is off.
    trace_context: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        # Only unfinished rows are ever looked for; done ones drop out of the index.
        sa.Index("ix_outbox_unfinished", "published_at", "id", postgresql_where=sa.text("done_at IS NULL"),
                 sqlite_where=sa.text("done_at IS NULL")),
    )


def enqueue_job(session: Session, task: str, args: list[Any], queue: str | None = None, *,
                run_after: datetime | None = None) -> OutboxJob:
    """Record a job to publish once the surrounding transaction commits (or once `run_after` passed)."""
    job = OutboxJob(task=task, args=args, queue=queue or QUEUE_OF.get(task, ORDERS_QUEUE), run_after=run_after,
                    trace_context=current_traceparent())
    session.add(job)
    session.flush()
    if run_after is None:
        # Held here, not found later in the identity map: it keeps clean objects only weakly.
        jobs: list[OutboxJob] = session.info.setdefault("outbox_jobs", [])
        jobs.append(job)
    return job


# The ids of the jobs committed during a worker's run, to publish when it ends (tasks/job_base.py);
# None outside a run (the API publishes its own from the session, with what it needs to send them).
committed_jobs: ContextVar[list[int] | None] = ContextVar("committed_jobs", default=None)


@event.listens_for(Session, "after_commit")
def _collect_committed(session: Session) -> None:
    collected = committed_jobs.get()
    if collected is not None and (jobs := session.info.pop("outbox_jobs", None)):
        # The identity, not `.id`: the commit expired the objects, and loading is not allowed here.
        collected.extend(sa.inspect(job).identity[0] for job in jobs)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    if committed_jobs.get() is not None:
        session.info.pop("outbox_jobs", None)  # never committed: nothing to publish


def pending_jobs(session: Session) -> list[OutboxJob]:
    """The jobs this session wrote, to publish right after its commit."""
    return list(session.info.get("outbox_jobs", []))


def pending_job_ids(session: Session) -> list[int]:
    return [job.id for job in pending_jobs(session)]


def forget_pending_jobs(session: Session) -> None:
    session.info.pop("outbox_jobs", None)


def mark_published(session: Session, job_ids: list[int]) -> None:
    """Note that these jobs reached the broker, so the relay does not send them again (caller commits)."""
    if job_ids:
        session.execute(sa.update(OutboxJob).where(OutboxJob.id.in_(job_ids), OutboxJob.published_at.is_(None))
                        .values(published_at=utcnow()).execution_options(synchronize_session=False))


def unfinished(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.and_(OutboxJob.done_at.is_(None), *conditions)
