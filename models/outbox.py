"""Jobs in PostgreSQL: written in the transaction that needs them, kept until their work is done.

Redis only carries a job; this table is its record. A row is unfinished while `done_at` is NULL:
`published_at` NULL means it is to be (re)sent to the broker once `run_after` has passed; a worker
that starts it takes a lease (`claimed_by`, `lease_until`) and ends it with `done_at`, or gives it
back with a later `run_after`. Beat's relay (services/relay.py) sends what is due and takes back
what a dead worker or an emptied broker lost, so a job is never stranded.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.jobs import JOB_TIME_LIMIT, ORDERS_QUEUE, QUEUE_OF
from models.base import Base, UTCDateTime, utcnow

# A lease outlasts a job's hard time limit: one that ran out means its holder is gone, not slow.
LEASE = timedelta(seconds=JOB_TIME_LIMIT + 15)


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

    __table_args__ = (
        # Only unfinished rows are ever looked for; done ones drop out of the index.
        sa.Index("ix_outbox_unfinished", "published_at", "id", postgresql_where=sa.text("done_at IS NULL"),
                 sqlite_where=sa.text("done_at IS NULL")),
    )


def enqueue_job(session: Session, task: str, args: list[Any], queue: str | None = None, *,
                run_after: datetime | None = None) -> OutboxJob:
    """Record a job to publish once the surrounding transaction commits (or once `run_after` passed)."""
    job = OutboxJob(task=task, args=args, queue=queue or QUEUE_OF.get(task, ORDERS_QUEUE), run_after=run_after)
    session.add(job)
    session.flush()
    if run_after is None:
        # Held here, not found later in the identity map: it keeps clean objects only weakly.
        jobs: list[OutboxJob] = session.info.setdefault("outbox_jobs", [])
        jobs.append(job)
    return job


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


class Claim(enum.StrEnum):
    CLAIMED = "claimed"
    DONE = "done"  # finished before: nothing to do
    HELD = "held"  # a live worker holds its lease
    UNKNOWN = "unknown"  # no such row (a table emptied under it)


# The marks every job run makes, built once with bound parameters (SQLAlchemy's compiled cache finds
# them). A NULL `steal_from` matches no holder, so one statement serves both kinds of claim.
_outbox = cast(sa.Table, OutboxJob.__table__)
_NOW = sa.bindparam("now", type_=UTCDateTime)
_CLAIM = (
    sa.update(_outbox)
    .where(_outbox.c.id == sa.bindparam("job_id", type_=sa.Integer), _outbox.c.done_at.is_(None),
           sa.or_(_outbox.c.lease_until.is_(None), _outbox.c.lease_until < _NOW,
                  _outbox.c.claimed_by == sa.bindparam("holder", type_=sa.String),
                  _outbox.c.claimed_by == sa.bindparam("steal_from", type_=sa.String)))
    .values(claimed_by=sa.bindparam("holder", type_=sa.String), started_at=_NOW,
            lease_until=sa.bindparam("lease_until", type_=UTCDateTime), attempts=_outbox.c.attempts + 1,
            published_at=sa.func.coalesce(_outbox.c.published_at, _NOW))
    .returning(_outbox.c.attempts)
)
_FINISH = (
    sa.update(_outbox)
    .where(_outbox.c.id == sa.bindparam("job_id", type_=sa.Integer), _outbox.c.done_at.is_(None))
    .values(done_at=_NOW, lease_until=sa.null(), last_error=sa.null())
)


def claim_job(session: Session | sa.Connection, job_id: int, holder: str, lease: timedelta = LEASE, *,
              steal_from: str | None = None) -> tuple[Claim, str | None, int]:
    """Take the job's lease unless it is done or a live holder has it: (outcome, holder, attempts).

    `steal_from` names a holder known to be dead (a killed child on this host): its lease is void.
    """
    now = utcnow()
    taken = session.execute(_CLAIM, {"job_id": job_id, "holder": holder, "steal_from": steal_from, "now": now,
                                        "lease_until": now + lease}).first()
    if taken:
        return Claim.CLAIMED, holder, int(taken.attempts)
    row = session.execute(sa.select(OutboxJob.done_at, OutboxJob.claimed_by, OutboxJob.attempts)
                          .where(OutboxJob.id == job_id)).first()
    if row is None:
        return Claim.UNKNOWN, None, 0
    return (Claim.DONE if row.done_at else Claim.HELD), row.claimed_by, int(row.attempts)


def adopt_job(session: Session, external_id: str, task: str, args: list[Any], queue: str) -> int:
    """The job row of a task a producer sent straight to the broker: from its start on, PostgreSQL
    holds it like any other (the same external id always maps to the same row)."""
    existing = session.scalar(sa.select(OutboxJob.id).where(OutboxJob.external_id == external_id))
    if existing is not None:
        return existing
    job = OutboxJob(task=task, args=args, queue=queue, external_id=external_id, published_at=utcnow())
    session.add(job)
    session.flush()
    return job.id


def finish_job(session: Session | sa.Connection, job_id: int) -> None:
    """The work is done: the row leaves the unfinished set (a holder that lost its lease finishes too)."""
    session.execute(_FINISH, {"job_id": job_id, "now": utcnow()})


def give_back_job(session: Session | sa.Connection, job_id: int, holder: str, error: str,
                  retry_in: float | None) -> None:
    """A failed run: try again after `retry_in` seconds (the relay sends it then), or give up (None)."""
    now = utcnow()
    values: dict[str, Any] = {"lease_until": None, "claimed_by": None, "last_error": error[:2000]}
    if retry_in is None:
        values["done_at"] = now
    else:
        values.update(published_at=None, run_after=now + timedelta(seconds=retry_in))
    session.execute(sa.update(OutboxJob).where(OutboxJob.id == job_id, OutboxJob.done_at.is_(None),
                                               OutboxJob.claimed_by == holder)
                    .values(**values).execution_options(synchronize_session=False))


def unfinished(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.and_(OutboxJob.done_at.is_(None), *conditions)


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
