"""idempotency.purge_keys: beat forgets Idempotency-Key answers older than IDEMPOTENCY_KEY_TTL_SECONDS."""

from __future__ import annotations

import logging
from datetime import timedelta

from core.jobs import PURGE_KEYS_TASK
from core.settings import settings
from models.base import utcnow
from models.db import purge_in_batches
from models.idempotency import purge_keys
from worker.celery_app import app

log = logging.getLogger("ticketq.tasks.idempotency")


@app.task(name=PURGE_KEYS_TASK)
def purge_idempotency_keys() -> int:
    before = utcnow() - timedelta(seconds=settings.idempotency_key_ttl_seconds)
    purged = purge_in_batches(lambda session, batch: purge_keys(session, before, batch))
    if purged:
        log.info("purged %d idempotency key(s)", purged)
    return purged
