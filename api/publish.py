"""After the commit that wrote them, send the request's outbox jobs; note them as sent off the request path.

A request commits its change and its job rows in one transaction, then sends each job with the
task id `outbox-<id>` (ticketq/broker.py) and answers. Recording that the job reached the broker
is left to a marker thread that writes `published_at` for a batch of jobs every MARK_INTERVAL
(models.outbox.mark_published), so a backlog waiting in Redis is not sent again by the relay, and
no request pays a second transaction. If the process dies before marking, the relay sends the job
again after its grace; a job delivered twice is acknowledged without running (tasks/jobs.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

from sqlalchemy.orm import Session

from models.db import get_sessionmaker
from models.outbox import forget_pending_jobs, mark_published, pending_jobs
from ticketq.broker import Job, send_jobs

log = logging.getLogger("ticketq.api.publish")

MARK_INTERVAL = 0.25  # seconds; far inside the relay's grace (worker/relay.py GRACE)
MARK_BATCH = 5_000


class PublishedMarker:
    """One daemon thread per process: collects sent job ids and marks them in batches."""

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._lock = threading.Lock()  # guards _pending; requests only hold it to append
        self._marking = threading.Lock()  # one batch written at a time; flush() waits for the thread's
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.marked = 0

    def add(self, job_ids: Sequence[int]) -> None:
        with self._lock:
            self._pending.extend(job_ids)
            self._wake.set()
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="outbox-marker", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(MARK_INTERVAL)  # let a batch gather
            self.flush()

    def flush(self) -> None:
        """Mark whatever waits now, after any batch being written (app shutdown calls it, so nothing
        is marked after the process stopped serving)."""
        with self._marking:
            with self._lock:
                batch, self._pending = self._pending, []
                self._wake.clear()
            for start in range(0, len(batch), MARK_BATCH):
                self._mark(batch[start:start + MARK_BATCH])

    def _mark(self, batch: list[int]) -> None:
        if not batch:
            return
        try:
            with get_sessionmaker()() as session, session.begin():
                if session.get_bind().dialect.name == "postgresql":
                    # Losing this on a crash costs one extra send, which tasks recognise.
                    session.connection().exec_driver_sql("SET LOCAL synchronous_commit = off")
                mark_published(session, batch)
            self.marked += len(batch)
        except Exception as exc:  # database away: the relay re-sends after its grace, tasks skip repeats
            log.warning("could not mark %d published job(s): %s", len(batch), exc)


marker = PublishedMarker()


def publish(jobs: Sequence[Job]) -> int:
    """Send already committed jobs and hand the sent ones to the marker; returns how many were sent."""
    sent = send_jobs(jobs)
    if sent:
        marker.add(sent)
    return len(sent)


def commit_and_publish(session: Session) -> int:
    """The order change and its jobs commit together; sending is best effort afterwards."""
    jobs = [Job(o.id, o.task, list(o.args), o.queue) for o in pending_jobs(session)]
    session.commit()
    forget_pending_jobs(session)
    return publish(sorted(jobs, key=lambda job: job.id))
