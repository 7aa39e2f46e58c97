"""PostgreSQL is the truth: what the broker or a dead worker lost is put back, and nothing else twice.

Against the run's real Redis, PostgreSQL, SMTP sink and live worker (with beat's relay every
second). A loss is made as it happens in production: the job's row says it reached Redis, but
Redis does not have it (emptied, failed over, a dead host's unacknowledged message).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK, task_id_of
from models.base import utcnow
from models.outbox import OutboxJob, enqueue_job
from services.relay import MARKER_KEY, STALE, relay_outbox
from tests.backends import CeleryWorker
from tests.tasks.confirm_helpers import BUYER, by_kind, confirmed_order, wait_jobs_done, wait_settled
from ticketq.embedded import EmbeddedRedis, SmtpSink
from worker import app

PARKED = "test-parked"  # a queue no worker consumes: jobs sent there stay in Redis, like a backlog
BACKLOG = 2000
OWNER = "owner@example.org"


def lost_confirmation(db: sessionmaker[Session], **row: Any) -> str:
    """A confirmed order whose confirmation job Redis was given and then lost."""
    identifier = confirmed_order(db, [("Ada Buyer", BUYER)])
    with db() as session, session.begin():
        session.execute(sa.update(OutboxJob).values(published_at=utcnow() - timedelta(seconds=5), **row))
    return identifier


# The job of the test below was sent 5 s before the broker lost it: the stale-job fallback (an empty
# queue, a job sent STALE ago) could take it back no sooner than this after the loss.
FALLBACK_EARLIEST = STALE - timedelta(seconds=5)
EMPTIED_BOUND = 25.0  # seconds from the loss to every email sent, well inside FALLBACK_EARLIEST
EMPTIED_LINE = re.compile(r"outbox relay: broker came back empty; (\d+) taken back")


def test_a_broker_that_comes_back_empty_gets_every_unfinished_job_again(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink, broker: Any
) -> None:
    """By the empty-broker path itself: the relay's log says so, and it is done long before the
    stale-job fallback could have sent the job again (waiting that long would prove nothing)."""
    assert FALLBACK_EARLIEST.total_seconds() > EMPTIED_BOUND
    identifier = lost_confirmation(db)
    logged = len(celery_worker.logfile.read_text(errors="replace"))
    broker.delete(MARKER_KEY)  # what an empty restart, a flush or a lagging replica leaves
    lost_at = time.monotonic()

    wait_settled(db, identifier, 2, timeout=EMPTIED_BOUND)  # the buyer's confirmation and the owner's notification
    took = time.monotonic() - lost_at
    assert took < EMPTIED_BOUND
    after = celery_worker.logfile.read_text(errors="replace")[logged:]
    taken_back = [int(n) for n in EMPTIED_LINE.findall(after)]
    assert taken_back and max(taken_back) >= 1, f"no relay line took the job back as lost:\n{after[-3000:]}"
    assert set(by_kind(smtp.messages)) == {("confirmation-buyer", BUYER), ("organizer-notification", OWNER)}
    [job] = wait_jobs_done(db, 1)
    assert job.attempts == 1 and broker.exists(MARKER_KEY)
    print(f"emptied broker: every email sent {took:.1f} s after the loss (fallback no sooner than "
          f"{FALLBACK_EARLIEST.total_seconds():.0f} s)")


def test_a_lease_whose_holder_died_on_another_host_is_taken_back(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    gone = utcnow() - timedelta(seconds=1)
    identifier = lost_confirmation(db, claimed_by="a-host-that-died:4242", started_at=gone, lease_until=gone,
                                   attempts=1)
    wait_settled(db, identifier, 2)
    [job] = wait_jobs_done(db, 1)
    assert job.attempts == 2 and job.claimed_by != "a-host-that-died:4242"


def dead_pid() -> str:
    """The pid of a process of this host that has exited."""
    pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert pid != str(os.getpid())
    return pid


def test_a_lease_of_a_killed_child_whose_message_was_lost_is_taken_back_before_it_runs_out(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    # Killed during a broker outage: its worker could not give the message back.
    identifier = lost_confirmation(db, claimed_by=f"{socket.gethostname()}:{dead_pid()}", started_at=utcnow(),
                                   lease_until=utcnow() + timedelta(minutes=5), attempts=1)
    wait_settled(db, identifier, 2, timeout=30)
    assert wait_jobs_done(db, 1)[0].attempts == 2


def test_a_job_redelivered_after_its_child_was_killed_runs_at_once_on_the_same_host(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    # The lease is still running, but its holder, a process on this host, is gone.
    identifier = lost_confirmation(db, claimed_by=f"{socket.gethostname()}:{dead_pid()}", started_at=utcnow(),
                                   lease_until=utcnow() + timedelta(minutes=5), attempts=1)
    with db() as session:
        job = session.scalars(sa.select(OutboxJob)).one()
    app.send_task(job.task, args=job.args, queue="documents", task_id=task_id_of(job.id))
    wait_settled(db, identifier, 2, timeout=30)  # long before the lease would have run out
    assert wait_jobs_done(db, 1)[0].attempts == 2


def test_a_job_sent_long_ago_to_a_queue_that_is_empty_was_lost_and_is_sent_again(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db, [("Ada Buyer", BUYER)])
    with db() as session, session.begin():
        session.execute(sa.update(OutboxJob).values(published_at=utcnow() - STALE - timedelta(seconds=5)))
    wait_settled(db, identifier, 2)
    assert len(smtp.messages) == 2


@pytest.fixture
def quiet(own_database: sessionmaker[Session], tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], Celery, Any]]:
    """A database and a Redis server of its own, with no worker or relay of the run's touching them."""
    import redis

    server = EmbeddedRedis(tmp_path / "redis").start()
    relay_app = Celery("relay-test")
    relay_app.config_from_object("celeryconfig")
    relay_app.conf.broker_url = server.url
    client = redis.Redis.from_url(server.url)
    try:
        yield own_database, relay_app, client
    finally:
        client.close()
        relay_app.close()
        server.stop()


def test_the_relay_takes_back_each_lost_job_once_and_never_a_backlog_still_in_redis(
    quiet: tuple[sessionmaker[Session], Celery, Any]
) -> None:
    factory, relay_app, broker = quiet
    assert relay_outbox(factory, relay_app).broker_emptied  # a new broker: nothing to take back yet
    with factory() as session, session.begin():
        for n in range(BACKLOG):
            enqueue_job(session, CONFIRM_TASK, [f"{n:032x}"], PARKED)
        # All as young as the last: on busy cores the loop alone can outlast the relay's grace.
        session.execute(sa.update(OutboxJob).values(created_at=utcnow()))
    assert relay_outbox(factory, relay_app).published == 0  # young jobs are the API's to publish
    with factory() as session, session.begin():
        session.execute(sa.update(OutboxJob).values(created_at=utcnow() - timedelta(minutes=1)))
    first = relay_outbox(factory, relay_app)
    assert (first.broker_emptied, first.published, broker.llen(PARKED)) == (False, BACKLOG, BACKLOG)
    for _ in range(3):  # a backlog waiting in Redis is left alone, sweep after sweep
        again = relay_outbox(factory, relay_app)
        assert (again.taken_back, again.published) == (0, 0)
    assert broker.llen(PARKED) == BACKLOG

    broker.flushdb()  # Redis comes back empty
    lost = relay_outbox(factory, relay_app)
    assert (lost.broker_emptied, lost.taken_back, lost.published) == (True, BACKLOG, BACKLOG)
    assert broker.llen(PARKED) == BACKLOG
    after = relay_outbox(factory, relay_app)
    assert (after.broker_emptied, after.taken_back, after.published) == (False, 0, 0)


def test_finished_jobs_are_kept_a_week_then_purged(quiet: tuple[sessionmaker[Session], Celery, Any]) -> None:
    factory, relay_app, _ = quiet
    with factory() as session, session.begin():
        for age in (timedelta(days=8), timedelta(days=6)):
            job = enqueue_job(session, CONFIRM_TASK, ["0" * 32], PARKED)
            job.done_at = utcnow() - age
        enqueue_job(session, CONFIRM_TASK, ["1" * 32], PARKED, run_after=utcnow() + timedelta(days=30))
    relay_outbox(factory, relay_app)
    with factory() as session:
        kept = session.scalars(sa.select(OutboxJob).order_by(OutboxJob.id)).all()
    assert [j.args for j in kept] == [["0" * 32], ["1" * 32]] and kept[0].done_at is not None


def test_after_a_failover_the_jobs_of_the_last_minute_nobody_holds_are_sent_again_once(
    quiet: tuple[sessionmaker[Session], Celery, Any]
) -> None:
    factory, relay_app, broker = quiet
    relay_outbox(factory, relay_app)  # the marker names this server
    now = utcnow()
    with factory() as session, session.begin():
        for age in (timedelta(seconds=10), timedelta(minutes=5)):
            job = enqueue_job(session, CONFIRM_TASK, [f"{int(age.total_seconds()):032x}"], PARKED)
            job.published_at, job.created_at = now - age, now - age
    broker.set(MARKER_KEY, "a-replica-that-was-promoted")  # Sentinel promoted another server
    replaced = relay_outbox(factory, relay_app)
    assert (replaced.broker_emptied, replaced.broker_replaced, replaced.taken_back) == (False, True, 1)
    assert broker.llen(PARKED) == 1  # the recent job; the old one had long been taken from Redis
    again = relay_outbox(factory, relay_app)
    assert (again.broker_replaced, again.taken_back, again.published) == (False, 0, 0)
