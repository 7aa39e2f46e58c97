"""outbox.relay: beat's run of the relay (services/relay.py) that keeps PostgreSQL's jobs moving."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from core.jobs import RELAY_TASK
from models.db import get_sessionmaker
from services.relay import publish_jobs as publish
from services.relay import relay_outbox as relay
from worker.celery_app import app


@app.task(name=RELAY_TASK)
def relay_outbox() -> str:
    return str(relay(get_sessionmaker(), app))


def publish_jobs(factory: sessionmaker[Session], job_ids: Iterable[int]) -> int:
    """Publish these jobs now through the worker's app (bench workloads, tools)."""
    return publish(factory, app, sorted(set(job_ids)))
