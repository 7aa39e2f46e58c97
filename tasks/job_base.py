"""The Celery side of a job's record: take its lease before running, mark it done or give it back after.

Every task that does an order's work has `base=JobTask`. Its message's task id names its outbox row
(`outbox-<id>`); a task a producer sent by name is adopted into a row when it starts. A second
delivery of a job that is done, or that a live worker holds, is acknowledged without running. A
failure is not retried by Celery: the row gets a later `run_after` and beat's relay sends it then,
so no retry waits in Redis and nothing is lost if Redis is.

When PostgreSQL goes away, a run waits for it (bounded, before the soft time limit) to claim its
row, and to mark its end: a run the outage broke gives its lease back as soon as the database
answers and is sent again at once, so only a dead or cut-off holder leaves a lease to run out. The
claim's number fences the run (models/leases.py): once its lease is gone it writes nothing more.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from celery import Task
from celery.exceptions import Ignore, Reject
from celery.signals import task_postrun, task_prerun
from sqlalchemy.orm import Session

from core.jobs import QUEUE_OF, job_id_of
from models.db import get_engine, get_sessionmaker
from models.errors import OrderError
from models.leases import (
    WAIT_FOR_DATABASE,
    Claim,
    Lease,
    LeaseLost,
    adopt_job,
    claim_job,
    finish_job,
    give_back_job,
    running_lease,
)
from models.outbox import committed_jobs
from models.reconnect import database_gone, retry_while_gone
from services.pipeline import Done
from services.relay import dead_local_holder, publish_jobs
from worker.celery_app import app

log = logging.getLogger("ticketq.tasks.jobs")

MAX_ATTEMPTS = 8  # an order job failing this often has a bug, not a hiccup: it stops, with its error
BACKOFF_BASE, BACKOFF_CAP = 2.0, 300.0


def backoff(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Exponential with jitter, so a recovering dependency is not hit by every retry at once."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def holder_name() -> str:
    """host:pid of this process: unique while it lives, and checkable from the same host."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def _job_transaction(*, adopting: bool = False) -> Iterator[Session | sa.Connection]:
    """Where the job's row is marked: a plain connection (the marks are single Core statements, no
    unit of work to pay for), or a session's transaction when a job row is to be adopted.

    On PostgreSQL the connection is in autocommit: each mark is ONE statement, its own transaction,
    in one round trip instead of BEGIN, the statement and COMMIT. (A claim that finds the lease taken
    reads the row in a second statement; under READ COMMITTED it saw the latest commits either way.)"""
    if adopting:
        with get_sessionmaker()() as session, session.begin():
            yield session
        return
    with get_engine().connect() as conn:
        if conn.dialect.name == "postgresql":  # the pool resets the isolation level on return
            yield conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        with conn.begin():
            yield conn


class JobTask(Task):  # type: ignore[misc]
    """A task whose run is recorded in its outbox row (see the module docstring)."""

    abstract = True
    # The row, not Celery, decides about retries; a lost child's message comes back at once.
    acks_late = True
    reject_on_worker_lost = True

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        running_lease.set(None)
        holder, deadline = holder_name(), time.monotonic() + WAIT_FOR_DATABASE
        try:
            job_id, claim, current, attempts = retry_while_gone(
                lambda: _claim(self.name, task_id, list(args), holder), deadline, f"{self.name} {list(args)}: claiming")
        except sa.exc.DBAPIError as exc:
            if not database_gone(exc):
                raise
            raise Reject(exc, requeue=True) from exc  # the broker keeps it until the database answers
        self.request.job_id = job_id if claim is Claim.CLAIMED else None
        self.request.job_attempts = attempts
        if claim is not Claim.CLAIMED:  # a repeat: done, running elsewhere, or its row was deleted
            log.info("job %s (%s %s) not run: %s", job_id, self.name, list(args),
                     f"held by {current}" if claim is Claim.HELD else claim.value)
            raise Ignore()
        running_lease.set(Lease(job_id, holder, attempts, deadline))

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], einfo: Any) -> None:
        lease, job_id = running_lease.get(), getattr(self.request, "job_id", None)
        running_lease.set(None)
        if job_id is None or lease is None:
            return
        # Celery hands a failed run's exception over as its retval (einfo is None here).
        error = retval if status != "SUCCESS" and isinstance(retval, BaseException) else None
        if isinstance(error, LeaseLost):  # another run owns the row now: nothing of it is ours to write
            log.warning("job %s (%s %s) stopped: %s", job_id, self.name, list(args), error)
            return
        gone = error is not None and database_gone(error)
        retry_in = _retry_in(error, lease.attempt, gone) if status != "SUCCESS" else None
        reason = f"{type(error).__name__}: {error}"
        what = f"job {job_id} ({self.name}): {'marking it done' if status == 'SUCCESS' else 'giving it back'}"
        try:
            marked = retry_while_gone(lambda: _mark(lease, status == "SUCCESS", reason, retry_in), lease.deadline, what)
        except sa.exc.DBAPIError as exc:
            if not database_gone(exc):
                raise
            log.error("job %s (%s %s): the database did not answer in this run's time; its lease runs out and "
                      "the relay sends it again", job_id, self.name, list(args))
            return
        if status == "SUCCESS":
            return
        if gone and marked:  # the database answers again: run it now, not at the relay's next pass
            publish_jobs(get_sessionmaker(), app, [job_id])
        log.warning("job %s (%s %s) failed: %r; %s", job_id, self.name, list(args), error,
                    "given up" if retry_in is None else f"the relay sends it again in {retry_in:.0f} s" if not gone
                    else "given back once the database answered, and sent again")


def _claim(task: str, task_id: str, args: list[Any], holder: str) -> tuple[int, Claim, str | None, int]:
    job_id = job_id_of(task_id)
    with _job_transaction(adopting=job_id is None) as session:
        if job_id is None:
            assert isinstance(session, Session)
            job_id = adopt_job(session, task_id, task, args, QUEUE_OF.get(task, "orders"))
        claim, current, attempts = claim_job(session, job_id, holder)
        if claim is Claim.HELD and dead_local_holder(current):
            claim, current, attempts = claim_job(session, job_id, holder, steal_from=current)
    return job_id, claim, current, attempts


def _retry_in(error: BaseException | None, attempts: int, gone: bool) -> float | None:
    """Seconds until a failed run is tried again; None: give up. A database that went away is no fault
    of the job's: it runs again at once (with backoff if that keeps happening), and is never given up."""
    if gone:
        return 0.0 if attempts < MAX_ATTEMPTS else backoff(attempts)
    if isinstance(error, OrderError) or attempts >= MAX_ATTEMPTS:
        return None
    return backoff(attempts)


def _mark(lease: Lease, done: bool, error: str, retry_in: float | None) -> bool:
    """The run's end in its row, fenced by its claim: done, or the lease given back."""
    with _job_transaction() as session:
        if done:
            finish_job(session, lease.job_id, lease)
            return True
        return give_back_job(session, lease.job_id, lease.holder, error, retry_in, lease.attempt)


def finish(done: Done) -> str:
    log.info("%s", done)
    return str(done)


@task_prerun.connect
def _collect_jobs(**_: Any) -> None:
    committed_jobs.set([])


@task_postrun.connect
def _publish_collected(task: Task, **_: Any) -> None:
    """Publish the jobs a run committed (a webhook for each email sent, a batch handed to the
    documents queue, an expiry's notifications) now, not at the relay's next pass after its grace."""
    job_ids = committed_jobs.get()
    committed_jobs.set(None)
    if not job_ids:
        return
    try:
        publish_jobs(get_sessionmaker(), app, sorted(set(job_ids)))
    except Exception:  # noqa: BLE001 - the jobs are committed: the relay sends them
        log.warning("%s: publishing %d job(s) it wrote failed; the relay sends them", task.name, len(job_ids),
                    exc_info=True)
