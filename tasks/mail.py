"""mail.send_delivery: the retry of one email, sent when its time comes (the relay publishes it)."""

from __future__ import annotations

from core.jobs import SEND_DELIVERY_TASK
from models.db import get_sessionmaker
from services import pipeline
from tasks.job_base import JobTask, finish
from worker.celery_app import app


@app.task(name=SEND_DELIVERY_TASK, base=JobTask)
def send_delivery(delivery_id: int) -> str:
    return finish(pipeline.send_delivery(get_sessionmaker(), delivery_id))
