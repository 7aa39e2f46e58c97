"""After the commit that wrote them, send the request's outbox jobs and note them as sent, both off the request path.

A request commits its change and its job rows in one transaction, hands the jobs to this process's
sender thread and answers. The sender sends whatever has gathered in one pipelined round trip to
Redis (task id `outbox-<id>`, core/producer.py): under load a batch of several requests' jobs
costs little more than one job alone, and a slow or dead broker holds no request.
Recording that a job reached the broker is left to a marker thread that writes `published_at` for
a batch of jobs every MARK_INTERVAL (models.outbox.mark_published), so a backlog waiting in Redis is
not sent again by the relay, and no request pays a second transaction. If the process dies before
sending or marking, the relay sends the job after its grace; a job delivered twice is acknowledged
without running (tasks/job_base.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.producer import Job, send_jobs
from models.db import get_sessionmaker
from models.outbox import forget_pending_jobs, mark_published, pending_jobs

log = logging.getLogger("ticketq.api.publish")

MARK_INTERVAL = 0.25  # seconds; far inside the relay's grace (services/relay.py GRACE)
MARK_BATCH = 5_000
# The sender waits this long after a job woke it, so that the jobs of the requests in flight go in
# the same round trip (sent at once, batches stay near one job); nothing beside a confirmation's mail.
SEND_GATHER = 0.005
T = TypeVar("T")


class BatchThread(Generic[T]):
    """One daemon thread per process that hands what gathered to `handle` in one batch; `gather`
    seconds after the first item woke it (0: at once, and what comes meanwhile waits for the next)."""

    def __init__(self, name: str, handle: Callable[[list[T]], None], gather: float = 0.0) -> None:
        self.name, self._handle, self._gather = name, handle, gather
        self._pending: list[T] = []
        self._lock = threading.Lock()  # guards _pending; requests only hold it to append
        self._handling = threading.Lock()  # one batch at a time; flush() waits for the thread's
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, items: Sequence[T]) -> None:
        with self._lock:
            self._pending.extend(items)
            if not self._wake.is_set():  # set() takes the event's condition even when already set
                self._wake.set()
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._gather:
                time.sleep(self._gather)  # let a batch gather
            try:
                self.flush()
            except Exception:  # the thread lives on; what the batch held is the relay's (its rows are committed)
                log.exception("%s: a batch failed", self.name)

    def flush(self) -> None:
        """Handle whatever waits now, after any batch being handled (app shutdown calls it)."""
        with self._handling:
            with self._lock:
                batch, self._pending = self._pending, []
                self._wake.clear()
            if batch:
                self._handle(batch)


def _mark(batch: list[int]) -> None:
    for start in range(0, len(batch), MARK_BATCH):
        part = batch[start:start + MARK_BATCH]
        try:
            with get_sessionmaker()() as session, session.begin():
                if session.get_bind().dialect.name == "postgresql":
                    # Losing this on a crash costs one extra send, which tasks recognise.
                    session.execute(sa.text("SET LOCAL synchronous_commit = off"))
                mark_published(session, part)
        except Exception as exc:  # database away: the relay re-sends after its grace, tasks skip repeats
            log.warning("could not mark %d published job(s): %s", len(part), exc)


def _send(batch: list[Job]) -> None:
    sent = send_jobs(batch)  # a failure is logged there; the relay sends what is left
    if sent:
        marker.add(sent)


marker: BatchThread[int] = BatchThread("outbox-marker", _mark, gather=MARK_INTERVAL)
sender: BatchThread[Job] = BatchThread("outbox-sender", _send, gather=SEND_GATHER)


def publish(jobs: Sequence[Job]) -> None:
    """Hand already committed jobs to the sender thread."""
    if jobs:
        sender.add(jobs)


def flush() -> None:
    """Send what waits, then mark what was sent (app shutdown: nothing is left to a process that stopped)."""
    sender.flush()
    marker.flush()


# Set in session.info while a request's Idempotency-Key answer is still to be written into the same
# transaction (api/keyed_requests.py): until then a handler's commit only flushes.
DEFER_COMMIT = "defer_commit"


def commit_and_publish(session: Session) -> None:
    """The order change and its jobs commit together; sending is best effort afterwards."""
    if session.info.get(DEFER_COMMIT):
        session.flush()
        return
    jobs = [Job(o.id, o.task, list(o.args), o.queue, trace_context=o.trace_context) for o in pending_jobs(session)]
    session.commit()
    forget_pending_jobs(session)
    publish(sorted(jobs, key=lambda job: job.id))
