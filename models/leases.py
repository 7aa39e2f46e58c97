"""A job run's lease on its outbox row: taken before the task runs (unless the job is done or a live
worker holds it), then the row marked done or given back for a later try."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.jobs import JOB_TIME_LIMIT
from models.base import UTCDateTime, utcnow
from models.outbox import OutboxJob

# A lease outlasts a job's hard time limit: one that ran out means its holder is gone, not slow.
LEASE = timedelta(seconds=JOB_TIME_LIMIT + 15)


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
