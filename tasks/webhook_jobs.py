"""webhooks.send: one attempt at one webhook notification, recorded in PostgreSQL like every job;
webhooks.purge: beat forgets finished notifications older than WEBHOOK_RETENTION_DAYS."""

from __future__ import annotations

import logging
from datetime import timedelta

from core.jobs import PURGE_WEBHOOKS_TASK, WEBHOOK_TASK
from core.settings import settings
from models.base import utcnow
from models.db import get_sessionmaker, purge_in_batches
from models.webhooks import purge_messages
from services import webhook_sending
from tasks.job_base import JobTask
from worker.celery_app import app

log = logging.getLogger("ticketq.tasks.webhooks")


@app.task(name=WEBHOOK_TASK, base=JobTask)
def send_webhook(message_id: int) -> str:
    return webhook_sending.send_webhook(get_sessionmaker(), message_id)


@app.task(name=PURGE_WEBHOOKS_TASK)
def purge_webhook_messages() -> int:
    before = utcnow() - timedelta(days=settings.webhook_retention_days)
    purged = purge_in_batches(lambda session, batch: purge_messages(session, before, batch))
    if purged:
        log.info("purged %d webhook notification(s) finished before %s", purged, before.isoformat())
    return purged
