"""webhooks.send: one attempt at one webhook notification, recorded in PostgreSQL like every job."""

from __future__ import annotations

from core.jobs import WEBHOOK_TASK
from models.db import get_sessionmaker
from services import webhooks
from tasks.jobs import JobTask
from worker.app import app


@app.task(name=WEBHOOK_TASK, base=JobTask)
def send_webhook(message_id: int) -> str:
    return webhooks.send_webhook(get_sessionmaker(), message_id)
