"""What beat's relay (services/relay.py) reads and updates in the outbox: the jobs due to be sent,
the ones whose holder or broker lost them, and finished ones to forget."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.outbox import OutboxJob, unfinished


def take_back_expired_leases(session: Session, now: datetime) -> int:
    """Jobs whose holder died (its lease ran out, the hard time limit is shorter): send them again."""
    result = session.execute(
        sa.update(OutboxJob).where(unfinished(OutboxJob.lease_until < now))
        .values(published_at=None, lease_until=None, claimed_by=None, run_after=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def leases_held_on(session: Session, host: str, now: datetime) -> list[tuple[int, str]]:
    """(job id, holder) of the running leases of processes on this host."""
    rows = session.execute(sa.select(OutboxJob.id, OutboxJob.claimed_by).where(unfinished(
        OutboxJob.lease_until >= now, OutboxJob.claimed_by.like(f"{host}:%"))))
    return [(int(job_id), str(holder)) for job_id, holder in rows]


def take_back_leases(session: Session, held: list[tuple[int, str]]) -> int:
    """Void these leases (their holders are known to be dead): the jobs are sent again."""
    count = 0
    for job_id, holder in held:
        result = session.execute(
            sa.update(OutboxJob).where(unfinished(OutboxJob.id == job_id, OutboxJob.claimed_by == holder))
            .values(published_at=None, lease_until=None, claimed_by=None)
            .execution_options(synchronize_session=False))
        count += int(getattr(result, "rowcount", 0) or 0)
    return count


def take_back_published_before(session: Session, moment: datetime, now: datetime,
                               queue: str | None = None, since: datetime | None = None) -> int:
    """Jobs sent to the broker before `moment` that nobody holds: the broker lost them (emptied,
    failed over to a replica that never had them, or a dead host's unacknowledged ones), so they
    are sent again — each once, since sending moves `published_at` past `moment`."""
    where = unfinished(OutboxJob.published_at < moment,
                       sa.or_(OutboxJob.lease_until.is_(None), OutboxJob.lease_until < now))
    if queue is not None:
        where = sa.and_(where, OutboxJob.queue == queue)
    if since is not None:
        where = sa.and_(where, OutboxJob.published_at >= since)
    result = session.execute(sa.update(OutboxJob).where(where).values(published_at=None)
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def due_jobs(session: Session, now: datetime, grace: timedelta, limit: int) -> list[OutboxJob]:
    """Unsent jobs whose time has come, locked so a second relay skips them. Jobs the API wrote a
    moment ago are left to the API, which publishes its own right after commit."""
    return list(session.scalars(
        sa.select(OutboxJob).where(unfinished(
            OutboxJob.published_at.is_(None),
            sa.or_(OutboxJob.run_after.is_(None), OutboxJob.run_after <= now),
            sa.or_(OutboxJob.run_after.is_not(None), OutboxJob.created_at <= now - grace),
        )).order_by(OutboxJob.id).limit(limit).with_for_update(skip_locked=True)
    ))


def purge_done(session: Session, before: datetime, limit: int) -> int:
    """Forget finished jobs older than `before`, a bounded batch at a time (the table stays small)."""
    old = sa.select(OutboxJob.id).where(OutboxJob.done_at < before).limit(limit).scalar_subquery()
    result = session.execute(sa.delete(OutboxJob).where(OutboxJob.id.in_(old))
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
