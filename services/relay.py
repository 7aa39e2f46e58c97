"""Beat's relay: send due jobs to the broker and take back what the broker or a dead worker lost.

PostgreSQL is the truth, Redis the transport. Each run:
1. If the broker's marker key is gone, Redis came back empty (a restart without persistence,
   eviction, a flush): every unfinished job nobody holds is sent again. If another server answers
   with the data (Sentinel promoted a replica), the jobs of the last minute nobody holds are.
2. A job whose lease ran out lost its worker (the lease outlasts the hard time limit); a lease
   held by a process of this host that is gone (a killed pool child) is void at once. Such a job has
   waited long enough: it is sent again at once and put at the head of its queue, ahead of newer work.
3. A queue that is empty while jobs sent to it long ago never started has lost them (a host that
   died with them unacknowledged, a failover to a replica that never had them).
4. Jobs not sent yet (the API could not publish, a retry whose time came) are sent, in batches.
Each job is sent again at most once per loss, so a backlog waiting in Redis is never duplicated by
a sweep; a job delivered twice is acknowledged without running (tasks/jobs.py).
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

from core.jobs import DOCUMENTS_QUEUE, MAIL_QUEUE, ORDERS_QUEUE, task_id_of
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
# A lease taken back is sent to the head of its queue: the relay looks for its message among this many
# of the queue's newest messages past those it sent itself (others may publish meanwhile).
AHEAD_SLACK = 200
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
    ahead: int = 0  # taken-back leases' jobs sent to the head of their queue
    published: int = 0
    left: bool = False  # more were due than one run publishes

    def __str__(self) -> str:
        said = ("broker came back empty; " if self.broker_emptied else
                "broker replaced (failover or restart); " if self.broker_replaced else "")
        ahead = f" ({self.ahead} to the head of their queue)" if self.ahead else ""
        return (f"{said}{self.taken_back} taken back{ahead}, {self.published} published"
                f"{', more due' if self.left else ''}")


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
            expired = take_back_expired_leases(session, now)
            report.taken_back += resent("lease_expired", len(expired))
            dead = [(i, h) for i, h in leases_held_on(session, socket.gethostname(), now) if dead_local_holder(h)]
            lost = take_back_leases(session, dead)
            report.taken_back += resent("holder_dead", len(lost))
            for queue in empty_queues:
                report.taken_back += resent("queue_lost", take_back_published_before(session, now - STALE, now, queue))
            purge_done(session, now - KEEP_DONE, 10 * BATCH)
        sent, report.ahead = send_ahead(factory, app, client, expired + lost)
    report.published, report.left = publish_due(factory, app)
    report.published += sent
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


# Moves the messages of the given task ids found among a queue's newest ARGV[1] (its left end, where
# kombu's LPUSH puts them) to its right end, where workers' BRPOP takes the next one: the job runs
# next, not after the backlog. Atomic in Redis: no worker takes a message halfway through.
_TO_HEAD = """
local wanted = {}
for i = 2, #ARGV do wanted[ARGV[i]] = true end
local found = {}
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local ok, message = pcall(cjson.decode, raw)
  if ok and type(message) == 'table' and type(message.headers) == 'table' and wanted[message.headers.id] then
    found[#found + 1] = raw
  end
end
for _, raw in ipairs(found) do
  redis.call('LREM', KEYS[1], 1, raw)
  redis.call('RPUSH', KEYS[1], raw)
end
return #found
"""


def send_ahead(factory: sessionmaker[Session], app: Celery, client: Any,
               jobs: list[tuple[int, str]]) -> tuple[int, int]:
    """Send these taken-back jobs (id, queue) now and put them at the head of their queues: a job whose
    lease ran out has already waited that long, and must not wait again behind work sent after it
    (chaos R7: a cut-off worker's job done by another within 90 s of the cut). Returns (sent, moved);
    one sent but not moved (a broker error) waits in its queue, one not sent is due for publish_due
    like any other."""
    sent = publish_jobs(factory, app, sorted(i for i, _ in jobs))
    if not sent:
        return 0, 0
    by_queue: dict[str, list[str]] = {}
    for job_id, queue in jobs:
        by_queue.setdefault(queue, []).append(task_id_of(job_id))
    moved = 0
    try:
        for queue, task_ids in by_queue.items():
            moved += int(client.eval(_TO_HEAD, 1, queue, len(task_ids) + AHEAD_SLACK, *task_ids))
    except Exception as exc:  # the jobs were sent; they run after the queue's backlog
        log.warning("outbox relay: could not move taken-back jobs to the head of their queue: %s", exc)
    return sent, moved


def publish_jobs(factory: sessionmaker[Session], app: Celery, job_ids: list[int]) -> int:
    """Send these jobs now (those not sent yet) and mark them; a broker error leaves them to the relay."""
    if not job_ids:
        return 0
    with factory() as session, session.begin():
        jobs = session.scalars(sa.select(OutboxJob).where(unfinished(OutboxJob.id.in_(job_ids),
                                                                     OutboxJob.published_at.is_(None)))
                               .order_by(OutboxJob.id).with_for_update(skip_locked=True)).all()
        return _send(list(jobs), app)


def _send(jobs: list[OutboxJob], app: Celery) -> int:
    """Send locked rows and mark those that reached the broker (the caller's transaction commits)."""
    sent = set(send_jobs([Job(j.id, j.task, list(j.args), j.queue, trace_context=j.trace_context) for j in jobs],
                         app))
    now = utcnow()
    for job in jobs:
        if job.id in sent:
            job.published_at = now
    return len(sent)
