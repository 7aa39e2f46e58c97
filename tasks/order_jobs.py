"""orders.confirm, orders.resend_confirmation, orders.send_cancellation, orders.send_payment_received: one job
each, recorded in PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from core.jobs import CANCELLATION_TASK, CONFIRM_TASK, PAYMENT_RECEIVED_TASK, RESEND_TASK
from models.db import get_sessionmaker
from services import pipeline
from tasks.job_base import JobTask, finish
from worker.celery_app import app

log = logging.getLogger("ticketq.tasks.orders")


@app.task(name=CONFIRM_TASK, base=JobTask)
def confirm(identifier: str) -> str:
    return finish(pipeline.confirm(get_sessionmaker(), identifier))


@app.task(bind=True, name=RESEND_TASK, base=JobTask)
def resend_confirmation(self: Task[Any, Any], identifier: str, requested_by: str | None = None) -> str:
    # The job's id makes a redelivered resend reuse its batch instead of sending a second one.
    return finish(pipeline.resend_confirmation(get_sessionmaker(), identifier, requested_by, self.request.id))


@app.task(name=CANCELLATION_TASK, base=JobTask)
def send_cancellation(identifier: str) -> str:
    return finish(pipeline.send_cancellation(get_sessionmaker(), identifier))


@app.task(name=PAYMENT_RECEIVED_TASK, base=JobTask)
def send_payment_received(identifier: str) -> str:
    return finish(pipeline.send_payment_received(get_sessionmaker(), identifier))
