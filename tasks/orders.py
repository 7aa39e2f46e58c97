"""orders.confirm, orders.resend_confirmation, orders.send_cancellation: record the emails, then dispatch."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from models.db import get_sessionmaker
from models.errors import OrderError
from models.outbox import CANCELLATION_TASK, CONFIRM_TASK, DOCUMENTS_QUEUE, RENDER_TASK, RESEND_TASK
from tasks.mail import queue_deliveries
from worker.app import app
from worker.pipeline import Plan, plan_cancellation, plan_confirmation, plan_resend

log = logging.getLogger("ticketq.tasks.orders")

# Unknown orders are not retried; anything else (database, broker hiccups) is, with backoff.
RETRY: dict[str, Any] = {"autoretry_for": (Exception,), "dont_autoretry_for": (OrderError,), "max_retries": 5,
                         "retry_backoff": 2, "retry_jitter": True}


def dispatch(plan: Plan) -> None:
    """Emails with PDFs wait for documents.render, which then queues the whole batch; others go now."""
    if plan.needs_documents:
        app.send_task(RENDER_TASK, args=[plan.identifier, plan.batch], queue=DOCUMENTS_QUEUE)
    else:
        queue_deliveries(plan.pending)
    log.info("order %s: batch %s, %d emails to send%s", plan.identifier, plan.batch or "-", len(plan.pending),
             " after the documents" if plan.needs_documents else "")


@app.task(name=CONFIRM_TASK, **RETRY)
def confirm(identifier: str) -> None:
    dispatch(plan_confirmation(get_sessionmaker(), identifier))


@app.task(bind=True, name=RESEND_TASK, **RETRY)
def resend_confirmation(self: Task[Any, Any], identifier: str, requested_by: str | None = None) -> None:
    # The job id makes a redelivered resend reuse its batch instead of sending a second one.
    dispatch(plan_resend(get_sessionmaker(), identifier, requested_by, self.request.id))


@app.task(name=CANCELLATION_TASK, **RETRY)
def send_cancellation(identifier: str) -> None:
    dispatch(plan_cancellation(get_sessionmaker(), identifier))
