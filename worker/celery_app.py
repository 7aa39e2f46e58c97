"""The Celery app, configured from celeryconfig.py, with every task module included."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from core.tracing import setup_tracing
from core.version import VERSION
from models.db import reset_engines, trace_engines, use_asynchronous_commit
from worker import metrics_server as _metrics  # noqa: F401  (WORKER_METRICS_PORT: this worker's /metrics)
from worker import tasklog as _tasklog  # noqa: F401  (task id + order on every log line)

app = Celery("ticketq")
app.config_from_object("celeryconfig")
app.conf.include = ["tasks.expiry", "tasks.outbox_relay", "tasks.order_jobs", "tasks.documents", "tasks.mail",
                    "tasks.webhook_jobs", "tasks.key_purge"]


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A prefork child must not reuse the parent's database sockets.
    reset_engines()
    use_asynchronous_commit()
    # Tracing per child, as the Celery instrumentation asks: the exporter's thread does not survive a fork.
    if setup_tracing("ticketq-worker"):
        trace_engines()


@worker_ready.connect
def _say_version(sender: Any = None, **_: Any) -> None:
    # An operator reading the log can tell which release this worker runs.
    logging.getLogger("ticketq.worker").info("ticketq %s worker ready", VERSION)
