"""Celery configuration (lowercase keys), built from the one settings object."""

from __future__ import annotations

from kombu import Queue

from core import redis_urls
from core import transport as broker_transport_fix
from core.jobs import (
    BEAT_KEY_PREFIX,
    DOCUMENTS_QUEUE,
    EXPIRE_TASK,
    JOB_TIME_LIMIT,
    MAIL_QUEUE,
    ORDERS_QUEUE,
    PURGE_KEYS_TASK,
    PURGE_WEBHOOKS_TASK,
    QUEUE_OF,
    RELAY_TASK,
)
from core.settings import settings

_redis = settings.broker_url()

# REDIS_URL in Celery's own form (Sentinel: a `;` chain plus master_name; rediss: certificate checked).
broker_url, _broker_options = redis_urls.celery_broker(_redis)
broker_transport_fix.register()  # kombu's Redis transports, minus a worker crash on losing Redis
result_backend, _backend_options = redis_urls.celery_backend(_redis)
broker_connection_retry_on_startup = True
# A worker never gives up on the broker: it waits out an outage and reconnects (chaos R2).
broker_connection_retry = True
broker_connection_max_retries = None
# A job running when Redis goes away goes on: it needs PostgreSQL and SMTP, not Redis, and records
# its end in its row (the default, to become True in Celery 6, would cancel it for nothing).
worker_cancel_long_running_tasks_on_connection_loss = False
# Publishing from the API must fail fast when Redis is down: the outbox relay retries later.
broker_transport_options = {
    # Redis hands out again a message unacknowledged for this long. No message waits in a worker
    # (retries are scheduled in PostgreSQL, never as countdowns), so it need only outlast the hard
    # time limit; jobs a dead worker held come back sooner anyway, through their lease (services/relay.py).
    "visibility_timeout": 3 * JOB_TIME_LIMIT,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
result_backend_transport_options = {"socket_timeout": 5, "socket_connect_timeout": 5}
result_expires = 3600

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

task_queues = (Queue(ORDERS_QUEUE), Queue(DOCUMENTS_QUEUE), Queue(MAIL_QUEUE))
task_default_queue = ORDERS_QUEUE
task_routes = {
    **{name: {"queue": queue} for name, queue in QUEUE_OF.items()},
    "orders.*": {"queue": ORDERS_QUEUE},
    "outbox.*": {"queue": ORDERS_QUEUE},
    "documents.*": {"queue": DOCUMENTS_QUEUE},
    "mail.*": {"queue": MAIL_QUEUE},
}

# A job is acknowledged only after it ran; a worker that dies mid-task gives it back.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_time_limit = JOB_TIME_LIMIT
task_soft_time_limit = JOB_TIME_LIMIT - 10
# A job's start and end are recorded in its PostgreSQL row; no result or STARTED state in Redis.
task_track_started = False
task_ignore_result = True

# Flower needs task events; they cost CPU on every job, so only where it is deployed (TASK_EVENTS).
worker_send_task_events = settings.task_events
task_send_sent_event = settings.task_events
worker_max_memory_per_child = 400_000  # KiB
worker_max_tasks_per_child = 1000
worker_hijack_root_logger = False


def _every(task: str, seconds: float) -> dict[str, object]:
    # A run not started before the next one is due is dropped: the next does the same work.
    return {"task": task, "schedule": seconds, "options": {"queue": ORDERS_QUEUE, "expires": seconds}}


beat_schedule = {
    "expire-stale-orders": _every(EXPIRE_TASK, settings.expiry_sweep_seconds),
    "relay-outbox": _every(RELAY_TASK, settings.outbox_relay_seconds),
    "purge-idempotency-keys": _every(PURGE_KEYS_TASK, settings.idempotency_purge_seconds),
    "purge-webhook-messages": _every(PURGE_WEBHOOKS_TASK, settings.webhook_purge_seconds),
}

broker_transport_options.update(_broker_options)
result_backend_transport_options.update(_backend_options)

# Beat: celery-redbeat keeps the schedule above and a lock in Redis, so two or more beats may run and
# exactly one schedules. The active beat extends the lock on every tick (at most beat_max_loop_interval
# apart, a quarter of the lock's life at most) and a standby tries for it as often: when the active one
# dies, its lock expires after redbeat_lock_timeout and a standby takes over within 20 + 5 = 25 s by
# default (contract: 30 s).
beat_scheduler = "worker.beat:StandbyScheduler"
redbeat_lock_timeout = settings.beat_lock_seconds
beat_max_loop_interval = min(5.0, redbeat_lock_timeout / 4)
redbeat_key_prefix = BEAT_KEY_PREFIX
redbeat_redis_url, redbeat_redis_options = redis_urls.redbeat(_redis)
