"""Commit, then publish the jobs the transaction wrote to the outbox (the relay catches leftovers)."""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from sqlalchemy.orm import Session

from models.db import get_sessionmaker
from models.outbox import pending_job_ids
from ticketq.redis_urls import redis_client
from ticketq.settings import settings

log = logging.getLogger("ticketq.api.publish")


@lru_cache(maxsize=1)
def _ping_client(url: str) -> redis.Redis:
    return redis_client(url, socket_timeout=0.5, socket_connect_timeout=0.5)  # plain, TLS or Sentinel


def broker_answers() -> bool:
    """A quick PING first: kombu would spend seconds retrying a dead broker inside the request."""
    if not settings.redis_url:
        return False
    try:
        return bool(_ping_client(settings.redis_url).ping())
    except (redis.RedisError, OSError):
        return False


def commit_and_publish(session: Session) -> int:
    """The order change and its jobs commit together; publishing is best effort afterwards."""
    job_ids = pending_job_ids(session)
    session.commit()
    session.info.pop("outbox_job_ids", None)
    if not job_ids:
        return 0
    if not broker_answers():
        log.warning("broker unreachable: %d outbox job(s) left for the relay", len(job_ids))
        return 0
    from tasks.outbox import publish_jobs  # imports the Celery app; only needed once there is a job

    return publish_jobs(get_sessionmaker(), job_ids)
