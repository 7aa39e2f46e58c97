"""orders.expire_stale: beat's sweep that expires held orders past their deadline."""

from __future__ import annotations

import logging

from core import metrics
from core.jobs import EXPIRE_TASK
from models.db import get_sessionmaker
from models.expiration import expire_stale
from worker.celery_app import app

log = logging.getLogger("ticketq.tasks.expiry")


@app.task(name=EXPIRE_TASK, ignore_result=False)
def expire_stale_orders() -> dict[str, int]:
    with metrics.expiry_sweep():  # its duration, and the time of the last one for the alert
        counts = expire_stale(get_sessionmaker())
    metrics.orders_expired(counts)
    log.info("expired %s", ", ".join(f"{n} {status}" for status, n in counts.items()))
    return counts
