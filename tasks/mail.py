"""mail.send / mail.send_batch: each logical email sent once, temporary failures retried with
exponential backoff and jitter, one delivery per retry job."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from models.db import get_sessionmaker
from models.outbox import DOCUMENTS_QUEUE, MAIL_BATCH_TASK, MAIL_QUEUE, MAIL_SEND_TASK, RENDER_TASK
from ticketq.settings import settings
from worker.app import app
from worker.delivery import Outcome, order_of_delivery, send_deliveries
from worker.pipeline import ensure_documents

log = logging.getLogger("ticketq.tasks.mail")

# Mail servers retry for days; we keep trying at the cap for at least 12 hours (about 19 on
# average), so an SMTP outage longer than a few minutes does not fail queued confirmations.
MAX_RETRIES = 160
BACKOFF_BASE = 2.0  # seconds: ~2, 4, 8 … capped
BACKOFF_CAP = 600.0
TRANSIENT = (OperationalError, SoftTimeLimitExceeded)


def backoff(retries: int) -> float:
    """Exponential backoff with jitter, so a recovering server is not hit by every retry at once."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2**retries)
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def queue_deliveries(delivery_ids: list[int], *, rendered: bool = False) -> None:
    """One job for the emails of one order: they share the order's load and the SMTP connection."""
    if delivery_ids:
        app.send_task(MAIL_BATCH_TASK, args=[delivery_ids], kwargs={"rendered": rendered}, queue=MAIL_QUEUE)


def send_now(delivery_ids: list[int], *, final: bool, rendered: bool) -> dict[int, Outcome]:
    """Send; when the PDFs are missing although documents.render just ran, render here once."""
    factory, smtp_url = get_sessionmaker(), settings.require_smtp_url()
    outcomes = send_deliveries(factory, delivery_ids, smtp_url, final=final)
    missing = [i for i, o in outcomes.items() if o is Outcome.NEEDS_DOCUMENTS]
    if missing and rendered:
        for identifier in {order_of_delivery(factory, i)[0] for i in missing}:
            ensure_documents(factory, identifier)
        outcomes.update(send_deliveries(factory, missing, smtp_url, final=final))
    waiting = {order_of_delivery(factory, i) for i, o in outcomes.items() if o is Outcome.NEEDS_DOCUMENTS}
    for identifier, batch in waiting:  # documents.render sends the batch again once the PDFs are stored
        app.send_task(RENDER_TASK, args=[identifier, batch], queue=DOCUMENTS_QUEUE)
    return outcomes


@app.task(name=MAIL_BATCH_TASK, autoretry_for=TRANSIENT, max_retries=MAX_RETRIES, retry_backoff=2,
          retry_jitter=True)
def send_batch(delivery_ids: list[int], rendered: bool = False) -> dict[str, str]:
    outcomes = send_now(delivery_ids, final=False, rendered=rendered)
    for delivery_id in [i for i, o in outcomes.items() if o is Outcome.RETRY]:
        app.send_task(MAIL_SEND_TASK, args=[delivery_id], countdown=backoff(0), queue=MAIL_QUEUE)
    return {str(i): o.value for i, o in outcomes.items()}


@app.task(bind=True, name=MAIL_SEND_TASK, autoretry_for=TRANSIENT, max_retries=MAX_RETRIES, retry_backoff=2,
          retry_jitter=True)
def send_mail(self: Task[Any, Any], delivery_id: int, rendered: bool = False) -> str:
    outcome = send_now([delivery_id], final=self.request.retries >= MAX_RETRIES, rendered=rendered)[delivery_id]
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=backoff(self.request.retries + 1))
    return outcome.value
