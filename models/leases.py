"""A job run's lease on its outbox row: taken before the task runs (unless the job is done or a live
worker holds it), then the row marked done or given back for a later try."""

from __future__ import annotations

import enum
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.jobs import JOB_TIME_LIMIT
from models.base import UTCDateTime, utcnow
from models.outbox import OutboxJob

# A lease outlasts a job's hard time limit: one that ran out means its holder is gone, not slow.
LEASE = timedelta(seconds=JOB_TIME_LIMIT + 15)
# How long after its start a run may wait for a database that went away: it stops before Celery's
# soft time limit (JOB_TIME_LIMIT - 10), so it can still give up cleanly.
WAIT_FOR_DATABASE = JOB_TIME_LIMIT - 12


@dataclass(frozen=True)
class Lease:
    """One run's hold on its job row. `attempt` is the claim's number (claim_job increments it): the
    fencing token that says the lease is still this run's and not a later claim's."""

    job_id: int
    holder: str
    attempt: int
    deadline: float = field(default_factory=lambda: time.monotonic() + WAIT_FOR_DATABASE, compare=False)


class LeaseLost(RuntimeError):
    """This run's lease ran out or was claimed again: it must send and record nothing more."""


# The lease of the job this thread is running (tasks/job_base.py sets it around each run): what the send
# path checks before each email and puts in the statement that records it.
running_lease: ContextVar[Lease | None] = ContextVar("running_lease", default=None)


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
# set_config(..., is_local) in a statement run alone (autocommit) makes that one transaction wait for
# its WAL flush on a worker's asynchronous-commit connection (models.db): a claim or an email's
# record that a PostgreSQL crash took back would let a second run send the same email.
DURABLE = sa.func.set_config("synchronous_commit", "on", True).is_not(None)
_CLAIM_DURABLE = _CLAIM.where(DURABLE)
_FINISH = (
    sa.update(_outbox)
    .where(_outbox.c.id == sa.bindparam("job_id", type_=sa.Integer), _outbox.c.done_at.is_(None))
    .values(done_at=_NOW, lease_until=sa.null(), last_error=sa.null())
)
_LEASE_JOB = sa.bindparam("lease_job", type_=sa.Integer)
# True while the run named by the lease_* parameters holds its lease; a NULL lease_job (work done
# outside a job run: tests, tools) is not fenced.
LEASE_HOLDS = sa.or_(_LEASE_JOB.is_(None), sa.exists().where(
    _outbox.c.id == _LEASE_JOB, _outbox.c.done_at.is_(None),
    _outbox.c.claimed_by == sa.bindparam("lease_holder", type_=sa.String),
    _outbox.c.attempts == sa.bindparam("lease_attempt", type_=sa.Integer),
    _outbox.c.lease_until > sa.bindparam("lease_now", type_=UTCDateTime)))
_HOLDS = sa.select(LEASE_HOLDS.label("holds"))


def lease_params(lease: Lease | None) -> dict[str, Any]:
    """The parameters of LEASE_HOLDS for this lease (None: no fence)."""
    if lease is None:
        return {"lease_job": None, "lease_holder": None, "lease_attempt": None, "lease_now": None}
    return {"lease_job": lease.job_id, "lease_holder": lease.holder, "lease_attempt": lease.attempt,
            "lease_now": utcnow()}


def lease_holds(session: Session | sa.Connection, lease: Lease | None) -> bool:
    """Is the lease still this run's: not done, not run out, not taken back or claimed again?"""
    return lease is None or bool(session.execute(_HOLDS, lease_params(lease)).scalar())


def claim_job(session: Session | sa.Connection, job_id: int, holder: str, lease: timedelta = LEASE, *,
              steal_from: str | None = None) -> tuple[Claim, str | None, int]:
    """Take the job's lease unless it is done or a live holder has it: (outcome, holder, attempts).

    `steal_from` names a holder known to be dead (a killed child on this host): its lease is void.
    """
    now = utcnow()
    bind = session.get_bind() if isinstance(session, Session) else session
    statement = _CLAIM_DURABLE if bind.dialect.name == "postgresql" else _CLAIM
    taken = session.execute(statement, {"job_id": job_id, "holder": holder, "steal_from": steal_from, "now": now,
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


def finish_job(session: Session | sa.Connection, job_id: int, lease: Lease | None = None) -> None:
    """The work is done: the row leaves the unfinished set. With `lease`, only while the row is still
    that run's (a run whose lease was taken back leaves the row to the relay or the new holder)."""
    statement = _FINISH if lease is None else _FINISH.where(_outbox.c.claimed_by == lease.holder,
                                                            _outbox.c.attempts == lease.attempt)
    session.execute(statement, {"job_id": job_id, "now": utcnow()})


def give_back_job(session: Session | sa.Connection, job_id: int, holder: str, error: str,
                  retry_in: float | None, attempt: int | None = None) -> bool:
    """A failed run: try again after `retry_in` seconds (the relay sends it then; 0: at once), or give
    up (None). Only the holder gives a lease back, and with `attempt` only its latest claim."""
    now = utcnow()
    values: dict[str, Any] = {"lease_until": None, "claimed_by": None, "last_error": error[:2000]}
    if retry_in is None:
        values["done_at"] = now
    else:
        values.update(published_at=None, run_after=now + timedelta(seconds=retry_in))
    where = [OutboxJob.id == job_id, OutboxJob.done_at.is_(None), OutboxJob.claimed_by == holder]
    if attempt is not None:
        where.append(OutboxJob.attempts == attempt)
    result = session.execute(sa.update(OutboxJob).where(*where)
                             .values(**values).execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 1))
