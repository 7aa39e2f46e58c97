"""Publishing outbox jobs to the broker: right after commit, and again by the relay on beat."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.db import get_sessionmaker
from models.outbox import RELAY_TASK, OutboxJob
from worker.app import app

log = logging.getLogger("ticketq.outbox")

# The API publishes its own jobs right after commit; the relay leaves young ones to it.
RELAY_GRACE = timedelta(seconds=5)


def publish_jobs(factory: sessionmaker[Session], job_ids: Iterable[int]) -> int:
    """Send the jobs to the broker and mark them published, in one short transaction.

    A broker error stops there and leaves the rest for the relay. A job may be published twice (a
    crash between send and mark, or two relays): its task id is the same each time and every task
    is idempotent, so the mark need not be durable at once (asynchronous commit on PostgreSQL).
    """
    ids = sorted(set(job_ids))
    if not ids:
        return 0
    with factory() as session, session.begin():
        jobs = session.scalars(
            sa.select(OutboxJob).where(OutboxJob.id.in_(ids), OutboxJob.published_at.is_(None))
            .order_by(OutboxJob.id).with_for_update(skip_locked=True)
        ).all()
        sent: list[int] = []
        for job in jobs:
            try:
                app.send_task(job.task, args=job.args, queue=job.queue, retry=False, ignore_result=True,
                              task_id=f"outbox-{job.id}")
            except Exception as exc:  # broker down: kombu raises many kinds
                job.attempts += 1
                job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("outbox job %s (%s %s) not published: %s", job.id, job.task, job.args, exc)
                break
            sent.append(job.id)
        if sent:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
            session.execute(sa.update(OutboxJob).where(OutboxJob.id.in_(sent)).values(published_at=utcnow())
                            .execution_options(synchronize_session=False))
    return len(sent)


def unpublished_job_ids(session: Session, *, older_than: timedelta = RELAY_GRACE, limit: int = 1000) -> list[int]:
    cutoff = utcnow() - older_than
    return list(session.scalars(
        sa.select(OutboxJob.id).where(OutboxJob.published_at.is_(None), OutboxJob.created_at <= cutoff)
        .order_by(OutboxJob.id).limit(limit)
    ))


@app.task(name=RELAY_TASK)
def relay_outbox() -> int:
    factory = get_sessionmaker()
    with factory() as session:
        ids = unpublished_job_ids(session)
    sent = publish_jobs(factory, ids)
    if ids:
        log.info("outbox relay published %d of %d waiting jobs", sent, len(ids))
    return sent
