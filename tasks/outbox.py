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
    """Send each job to the broker and mark it published; a broker error leaves it for the relay.

    A job may be published twice (a crash between send and mark): every task is idempotent.
    """
    published = 0
    for job_id in job_ids:
        with factory() as session, session.begin():
            job = session.get(OutboxJob, job_id, with_for_update={"skip_locked": True})
            if job is None or job.published_at is not None:
                continue
            try:
                app.send_task(job.task, args=job.args, queue=job.queue, retry=False, ignore_result=True,
                              task_id=f"outbox-{job.id}-{job.attempts}")
            except Exception as exc:  # broker down: kombu raises many kinds
                job.attempts += 1
                job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("outbox job %s (%s %s) not published: %s", job.id, job.task, job.args, exc)
                return published
            job.published_at = utcnow()
            published += 1
    return published


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
