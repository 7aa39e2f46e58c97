"""outbox.relay: beat's run of the relay (worker/relay.py) that keeps PostgreSQL's jobs moving."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from models.db import get_sessionmaker
from models.outbox import RELAY_TASK
from worker.app import app
from worker.relay import publish_jobs as publish
from worker.relay import relay_outbox as relay


@app.task(name=RELAY_TASK)
def relay_outbox() -> str:
    return str(relay(get_sessionmaker(), app))


def publish_jobs(factory: sessionmaker[Session], job_ids: Iterable[int]) -> int:
    """Publish these jobs now through the worker's app (bench workloads, tools)."""
    return publish(factory, app, sorted(set(job_ids)))
