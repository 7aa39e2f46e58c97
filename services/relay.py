"""Beat's relay: send due jobs to the broker and take back what the broker or a dead worker lost.

PostgreSQL is the truth, Redis the transport. Each run:
1. If the broker's marker key is gone, Redis came back empty (a restart without persistence,
   eviction, a flush): every unfinished job nobody holds is sent again. If another server answers
   with the data (Sentinel promoted a replica), the jobs of the last minute nobody holds are.
2. A job whose lease ran out lost its worker (the lease outlasts the hard time limit); a lease
   held by a process of this host that is gone (a killed pool child) is void at once.
3. A queue that is empty while jobs sent to it long ago never started has lost them (a host that
   died with them unacknowledged, a failover to a replica that never had them).
4. Jobs not sent yet (the API could not publish, a retry whose time came) are sent, in batches.
Each job is sent again at most once per loss, so a backlog waiting in Redis is never duplicated by
a sweep; a job delivered twice is acknowledged without running (tasks/job_base.py).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import DOCUMENTS_QUEUE, MAIL_QUEUE, ORDERS_QUEUE
from core.metrics import relay_resent as resent
from core.producer import Job, send_jobs
from models.base import utcnow
from models.outbox import OutboxJob, unfinished
from models.relaying import (
    due_jobs,
    leases_held_on,
    purge_done,
    take_back_expired_leases,
    take_back_leases,
    take_back_published_before,
)

log = logging.getLogger("ticketq.relay")

MARKER_KEY = "ticketq:broker-marker"
QUEUES = (ORDERS_QUEUE, DOCUMENTS_QUEUE, MAIL_QUEUE)
# The API publishes its own jobs right after commit; the relay leaves young ones to it.
GRACE = timedelta(seconds=5)
# A job sent this long ago to a queue that is now empty, and never started, was lost on the way.
STALE = timedelta(seconds=60)
# After a failover, jobs sent this long before the relay noticed are sent again (each once): a
# replica lags by far less, and the relay notices within a run or two.
REPLICATION_WINDOW = timedelta(seconds=60)
BATCH = 1000
KEEP_DONE = timedelta(days=7)  # finished jobs are kept this long for inspection, then purged
TIME_BUDGET = 20.0  # seconds of publishing per run; the next run goes on where this one stopped


@dataclass
class RelayReport:
    broker_emptied: bool = False
    broker_replaced: bool = False  # another server answers with the data (a failover, a restart)
    taken_back: int = 0
    published: int = 0
    left: bool = False  # more were due than one run publishes

    def __str__(self) -> str:
        said = ("broker came back empty; " if self.broker_emptied else
                "broker replaced (failover or restart); " if self.broker_replaced else "")
        return f"{said}{self.taken_back} taken back, {self.published} published{', more due' if self.left else ''}"


def dead_local_holder(holder: str | None) -> bool:
    """A lease holder (host:pid) on this host whose process is gone: a killed pool child."""
    if not holder:
        return False
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def broker_client(producer: Any) -> Any:
    """The redis-py client kombu uses for this producer's connection (plain Redis, TLS or Sentinel alike)."""
    return producer.connection.default_channel.client


def broker_check(client: Any) -> tuple[bool, bool]:
    """(emptied, replaced): the marker key holds the replication id of the server that wrote it.

    Missing: the broker lost its data (the very first run on a new broker finds none either, and
    sending every unfinished job then is what a new broker needs too). Present with another id: a
    different server answers with the data, e.g. a replica promoted by Sentinel, which may lack the
    last writes the old master acknowledged. Only the relay that swaps the marker acts on either.
    """
    replid = str(client.info("replication").get("master_replid") or uuid.uuid4().hex)
    marker = client.get(MARKER_KEY)
    if marker is None:
        return bool(client.set(MARKER_KEY, replid, nx=True)), False
    seen = marker.decode() if isinstance(marker, bytes) else str(marker)
    if seen == replid:
        return False, False
    return False, client.getset(MARKER_KEY, replid) == marker


def relay_outbox(factory: sessionmaker[Session], app: Celery) -> RelayReport:
    report = RelayReport()
    with app.producer_or_acquire() as producer:
        client = broker_client(producer)
        now = utcnow()
        report.broker_emptied, report.broker_replaced = broker_check(client)
        empty_queues = [q for q in QUEUES if not client.llen(q)]
        with factory() as session, session.begin():
            if report.broker_emptied:
                report.taken_back += resent("broker_emptied", take_back_published_before(session, now, now))
            elif report.broker_replaced:  # what the old server took last may not have reached the new one
                report.taken_back += resent("failover", take_back_published_before(
                    session, now, now, since=now - REPLICATION_WINDOW))
            report.taken_back += resent("lease_expired", take_back_expired_leases(session, now))
            dead = [(i, h) for i, h in leases_held_on(session, socket.gethostname(), now) if dead_local_holder(h)]
            report.taken_back += resent("holder_dead", take_back_leases(session, dead))
            for queue in empty_queues:
                report.taken_back += resent("queue_lost", take_back_published_before(session, now - STALE, now, queue))
            purge_done(session, now - KEEP_DONE, 10 * BATCH)
    report.published, report.left = publish_due(factory, app)
    if report.broker_emptied or report.broker_replaced or report.taken_back or report.published:
        log.info("outbox relay: %s", report)
    return report


def publish_due(factory: sessionmaker[Session], app: Celery) -> tuple[int, bool]:
    """Send due jobs, a locked batch per transaction, within the time budget; (sent, more left)."""
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < TIME_BUDGET:
        with factory() as session, session.begin():
            jobs = due_jobs(session, utcnow(), GRACE, BATCH)
            batch = _send(jobs, app)
        sent += batch
        if len(jobs) < BATCH or batch < len(jobs):  # all sent, or the broker stopped answering
            return sent, False
    return sent, True


def publish_jobs(factory: sessionmaker[Session], app: Celery, job_ids: list[int]) -> int:
    """Send these jobs now (those not sent yet) and mark them, BATCH per transaction (a sweep may have
    written thousands); a broker error leaves them to the relay."""
    sent = 0
    for first in range(0, len(job_ids), BATCH):
        with factory() as session, session.begin():
            batch = job_ids[first:first + BATCH]
            jobs = session.scalars(sa.select(OutboxJob).where(unfinished(OutboxJob.id.in_(batch),
                                                                         OutboxJob.published_at.is_(None)))
                                   .order_by(OutboxJob.id).with_for_update(skip_locked=True)).all()
            sent += _send(list(jobs), app)
    return sent


def _send(jobs: list[OutboxJob], app: Celery) -> int:
    """Send locked rows and mark those that reached the broker (the caller's transaction commits)."""
    sent = set(send_jobs([Job(j.id, j.task, list(j.args), j.queue, trace_context=j.trace_context) for j in jobs],
                         app))
    now = utcnow()
    for job in jobs:
        if job.id in sent:
            job.published_at = now
    return len(sent)
