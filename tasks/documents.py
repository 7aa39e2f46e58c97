"""documents.render: lay out an order's PDFs on the documents queue, then send the emails waiting for them."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init

from models.db import get_sessionmaker
from models.errors import OrderError
from models.outbox import RENDER_TASK
from tasks.mail import queue_deliveries
from worker.app import app
from worker.documents import warm_up
from worker.pipeline import prepare_batch

log = logging.getLogger("ticketq.tasks.documents")


@app.task(name=RENDER_TASK, autoretry_for=(Exception,), dont_autoretry_for=(OrderError,), max_retries=3,
          retry_backoff=2, retry_jitter=True)
def render_documents(identifier: str, batch: str | None = None) -> bool:
    """Render unless stored; then queue the batch's unsent emails as one mail job."""
    rendered, pending = prepare_batch(get_sessionmaker(), identifier, batch)
    log.info("order %s: documents %s, %d emails queued", identifier,
             "rendered" if rendered else "already stored", len(pending))
    queue_deliveries(pending, rendered=True)
    return rendered


@worker_process_init.connect
def _warm_renderer(**_: Any) -> None:
    # Font discovery and CSS parsing once per child, before the first order waits for them.
    warm_up()
