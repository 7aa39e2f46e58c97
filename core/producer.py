"""Sending jobs to the broker from a process that runs none (the API): a Celery producer configured
from celeryconfig that includes no task module, so a producer never imports the worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from celery import Celery

from core.jobs import task_id_of
from core.tracing import continued, message_headers

log = logging.getLogger("ticketq.producer")

# After a failed send, the next ones skip the broker for this long (the outbox relay sends what is
# left), so a dead or hanging Redis costs one request a short timeout, not every request.
BACKOFF_SECONDS = 2.0
# A request waits at most this long on a broker that does not answer.
SOCKET_TIMEOUT = 1.0
PIPELINE = 500  # jobs per pipelined round trip to Redis


@dataclass(frozen=True)
class Job:
    """What a producer needs of an outbox row: its id (the task id names it), task, args and queue."""

    id: int
    task: str
    args: list[Any]
    queue: str
    countdown: float | None = None  # seconds the worker holds it before running (None: at once)
    trace_context: str | None = None  # the traceparent stored with the job (core/tracing.py)


@lru_cache(maxsize=1)
def producer_app() -> Celery:
    """The Celery app of a producer: celeryconfig's broker and routes, no task modules, no retries."""
    app = Celery("ticketq-producer")
    app.config_from_object("celeryconfig")
    options = dict(app.conf.broker_transport_options or {})
    # Connecting fails at once instead of kombu's retry loop; a slow broker is cut short.
    options.update(max_retries=0, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT)
    app.conf.broker_transport_options = options
    return app


class _Backoff:
    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def active(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        with self._lock:
            self._until = time.monotonic() + BACKOFF_SECONDS


_backoff = _Backoff()


def send_jobs(jobs: Sequence[Job], app: Celery | None = None) -> list[int]:
    """Send each job with task id `outbox-<id>` (through `app`, default the producer's); returns the
    ids sent. Messages go in batches of PIPELINE (kombu's `Producer.batch`: one pipelined round trip
    each on Redis). A broker error is logged and the rest is left to the relay: the rows are
    committed, so nothing is lost; a batch whose fate is uncertain is sent again, and tasks
    recognise a repeat."""
    own = app is None  # the backoff guards requests; the relay keeps its own schedule
    if not jobs or (own and _backoff.active()):
        return []
    app = app or producer_app()
    sent: list[int] = []
    try:
        with app.producer_or_acquire() as producer:
            for start in range(0, len(jobs), PIPELINE):
                chunk = jobs[start:start + PIPELINE]
                with producer.batch(max_size=PIPELINE):  # sent when the block ends
                    for job in chunk:
                        # add_to_parent=False: a job sent from inside a task (the relay) is not its child.
                        # argsrepr: a job's args are a few JSON primitives, whose plain repr is what
                        # Celery's saferepr would write, at a fraction of its cost.
                        # headers: the trace that wrote the job, continued by the worker.
                        with continued(job.trace_context):
                            app.send_task(job.task, args=job.args, queue=job.queue, task_id=task_id_of(job.id),
                                          countdown=job.countdown, producer=producer, ignore_result=True,
                                          retry=False, add_to_parent=False, argsrepr=repr(job.args),
                                          kwargsrepr="{}", headers=message_headers(job.trace_context))
                sent.extend(job.id for job in chunk)
    except Exception as exc:  # kombu raises many kinds for a dead broker; the relay sends the rest
        if own:
            _backoff.trip()
        log.warning("broker unreachable: %d of %d job(s) left for the relay: %s", len(jobs) - len(sent),
                    len(jobs), exc)
    return sent
