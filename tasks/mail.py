"""mail.send: one logical email per job, retried with exponential backoff and jitter on temporary failures."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from models.db import get_sessionmaker
from models.outbox import DOCUMENTS_QUEUE, MAIL_QUEUE, MAIL_SEND_TASK, RENDER_TASK
from ticketq.settings import settings
from worker.app import app
from worker.delivery import Outcome, order_of_delivery, send_delivery
from worker.pipeline import ensure_documents

log = logging.getLogger("ticketq.tasks.mail")

MAX_RETRIES = 8
BACKOFF_BASE = 2.0  # seconds: ~2, 4, 8 … capped
BACKOFF_CAP = 600.0


def backoff(retries: int) -> float:
    """Exponential backoff with jitter, so a recovering server is not hit by every retry at once."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**retries)
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def queue_deliveries(delivery_ids: list[int], *, rendered: bool = False) -> None:
    for delivery_id in delivery_ids:
        app.send_task(MAIL_SEND_TASK, args=[delivery_id], kwargs={"rendered": rendered} if rendered else None,
                      queue=MAIL_QUEUE)


@app.task(bind=True, name=MAIL_SEND_TASK, max_retries=MAX_RETRIES,
          autoretry_for=(OperationalError, SoftTimeLimitExceeded), retry_backoff=2, retry_jitter=True)
def send_mail(self: Task[Any, Any], delivery_id: int, rendered: bool = False) -> str:
    factory, smtp_url = get_sessionmaker(), settings.require_smtp_url()
    final = self.request.retries >= MAX_RETRIES
    outcome = send_delivery(factory, delivery_id, smtp_url, final=final)
    if outcome is Outcome.NEEDS_DOCUMENTS and rendered:
        # Rendered on the documents queue, yet gone again (order changed meanwhile): render here, once.
        ensure_documents(factory, order_of_delivery(factory, delivery_id)[0])
        outcome = send_delivery(factory, delivery_id, smtp_url, final=final)
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=backoff(self.request.retries))
    if outcome is Outcome.NEEDS_DOCUMENTS:
        # The PDFs went missing or the order changed: render on the documents queue, which sends us again.
        app.send_task(RENDER_TASK, args=[None], kwargs={"delivery_id": delivery_id}, queue=DOCUMENTS_QUEUE)
    return outcome.value
