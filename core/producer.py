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

from celery import Celery, signals

log = logging.getLogger("core.producer")

# After a failed send, the next ones skip the broker for this long (the outbox relay sends what is
# left), so a dead or hanging Redis costs one request a short timeout, not every request.
BACKOFF_SECONDS = 2.0
# A request waits at most this long on a broker that does not answer.
SOCKET_TIMEOUT = 1.0
REPR_MAX = 1024  # Celery's own cap on argsrepr
PIPELINE = 500  # jobs per pipelined round trip to Redis


@dataclass(frozen=True)
class Job:
    """What a producer needs of an outbox row: its id (the task id names it), task, args and queue."""

    id: int
    task: str
    args: list[Any]
    queue: str


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


def _reuse_client(channel: Any) -> None:
    """kombu's Redis channel builds a new redis-py client object for every message it puts (its
    `conn_or_acquire()` with no client), and building one costs more than the LPUSH it carries
    (bench P2: 40 % of a send). A client takes a pooled connection per command, so one per
    channel serves every thread; this channel only ever publishes."""
    if getattr(channel, "_ticketq_client", None) is not None or not hasattr(channel, "_create_client"):
        return
    create = channel._create_client
    client = create()

    def reused(asynchronous: bool = False) -> Any:
        return create(asynchronous=True) if asynchronous else client

    channel._ticketq_client = client
    channel._create_client = reused


def _send_task(app: Celery, producer: Any, job: Job, task_id: str) -> None:
    """Celery's own path (it also sends the task-sent event when enabled)."""
    app.send_task(job.task, args=job.args, queue=job.queue, task_id=task_id, producer=producer, retry=False,
                  ignore_result=True, argsrepr=repr(job.args)[:REPR_MAX], kwargsrepr="{}")


def _publish(app: Celery, producer: Any, job: Job, task_id: str) -> None:
    """What `app.send_task(name, args, queue=..., task_id=..., ignore_result=True, retry=False)` puts on
    the broker, built by Celery's own `create_task_message` and published on its `Producer` with the
    options its `send_task_message` gives a message for a named queue, without the work a producer
    of plain jobs does not need per message (routing by task name, the publish signals when nobody
    connects to them, an AsyncResult nobody reads: about a third of a send, bench P2). The same
    headers, properties and body: a worker runs it unchanged (tests/api/test_publish.py compares)."""
    fixed = _fixed_options(app)
    # argsrepr: Celery's saferepr of the args costs more than the rest of the message; a job's args
    # are a few JSON primitives, whose plain repr is the same text.
    argsrepr = repr(job.args)[:REPR_MAX]
    headers, properties, body, _ = fixed.create_task_message(
        task_id, job.task, job.args, {}, reply_to=app.thread_oid, ignore_result=True,
        argsrepr=argsrepr, kwargsrepr="{}")
    properties.update(argsrepr=argsrepr, kwargsrepr="{}")  # send_task's options land there too
    queue = _bound_queue(producer.channel, fixed.queues[job.queue])
    producer.publish(
        body, exchange="", routing_key=queue.name, serializer=fixed.serializer, compression=fixed.compression,
        retry=False, delivery_mode=queue.exchange.delivery_mode or fixed.delivery_mode, declare=[queue],
        headers=headers, **properties)


@dataclass(frozen=True)
class _Fixed:
    """What `send_task_message` reads from the app's configuration for every message, read once."""

    create_task_message: Any
    queues: Any
    serializer: str
    compression: str | None
    delivery_mode: Any


@lru_cache(maxsize=4)
def _fixed_options(app: Celery) -> _Fixed:
    conf = app.conf
    return _Fixed(app.amqp.create_task_message, app.amqp.queues, conf.task_serializer, conf.task_compression,
                  conf.task_default_delivery_mode)


def _bound_queue(channel: Any, queue: Any) -> Any:
    """The queue bound to this channel once: kombu's `maybe_declare` copies and binds an unbound entity
    on every publish before finding it already declared."""
    bound: dict[str, Any] = channel.__dict__.setdefault("_ticketq_queues", {})
    if queue.name not in bound:
        bound[queue.name] = queue.bind(channel)
    return bound[queue.name]


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
    ids sent. The messages go in pipelined batches (kombu's `Producer.batch`: one round trip for up
    to PIPELINE jobs instead of one each, which is most of a lone send's cost, bench P2). A broker
    error is logged and the rest is left to the relay (the rows are committed: nothing is lost; a
    batch whose fate is uncertain is sent again, and tasks recognise a repeat)."""
    from core.jobs import task_id_of

    own = app is None  # the backoff guards requests; the relay keeps its own schedule
    if not jobs or (own and _backoff.active()):
        return []
    app = app or producer_app()
    sent: list[int] = []
    try:
        with app.producer_or_acquire() as producer:
            _reuse_client(producer.channel)
            # A task-sent event (Flower), a parent task whose ids send_task would inherit (a send from
            # inside a running task), or a receiver of the publish signals takes Celery's own path.
            direct = not (app.conf.task_send_sent_event or app.current_worker_task is not None
                          or signals.before_task_publish.receivers or signals.after_task_publish.receivers)
            send = _publish if direct else _send_task
            for start in range(0, len(jobs), PIPELINE):
                chunk = jobs[start:start + PIPELINE]
                with producer.batch(max_size=PIPELINE):  # executed when the block ends
                    for job in chunk:
                        send(app, producer, job, task_id_of(job.id))
                sent.extend(job.id for job in chunk)
    except Exception as exc:  # kombu raises many kinds for a dead broker; the relay sends the rest
        if own:
            _backoff.trip()
        log.warning("broker unreachable: %d of %d job(s) left for the relay: %s", len(jobs) - len(sent),
                    len(jobs), exc)
    return sent
