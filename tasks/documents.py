"""documents.deliver_batch: render the PDFs a mail job found missing, then send that job's batch."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from core.jobs import DELIVER_BATCH_TASK
from models.db import get_sessionmaker
from services import einvoice, pipeline
from services.rendering import freeze_heap, warm_up
from tasks.job_base import JobTask, finish
from worker.celery_app import app


@app.task(name=DELIVER_BATCH_TASK, base=JobTask)
def deliver_batch(identifier: str, batch: str) -> str:
    return finish(pipeline.deliver_batch(get_sessionmaker(), identifier, batch))


@worker_init.connect
def _warm_renderer(**_: Any) -> None:
    # In the worker's main process, before the pool forks: font discovery, CSS parsing, a sample page
    # and the invoice's XSD once; every child, a replacement for a killed one too, starts
    # warm at once and shares those pages. What is alive then is left out of every garbage collection.
    warm_up()
    einvoice.warm_up()
    freeze_heap()
