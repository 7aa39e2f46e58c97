"""GET /healthz: can this process reach its database and its Redis? (unauthenticated)"""

from __future__ import annotations

import logging

import redis
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.schemas import Health
from core.redis_urls import redis_client
from core.settings import settings
from core.version import VERSION
from models.db import get_engine

log = logging.getLogger("ticketq.api.health")
router = APIRouter(tags=["health"])


def _database() -> str:
    try:
        with get_engine().connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any driver error means "not healthy", never a 500
        log.warning("healthz: database check failed: %s", exc)
        return "unavailable"


def _redis() -> str:
    if not settings.redis_url:
        return "not configured"
    client = redis_client(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)  # plain, TLS or Sentinel
    try:
        client.ping()
        return "ok"
    except (redis.RedisError, OSError) as exc:
        log.warning("healthz: redis check failed: %s", exc)
        return "unavailable"
    finally:
        client.close()


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz() -> JSONResponse:
    checks = Health(status="ok", database=_database(), redis=_redis(), version=VERSION)
    healthy = checks.database == "ok" and checks.redis == "ok"
    if not healthy:
        checks.status = "unavailable"
    return JSONResponse(checks.model_dump(), status_code=200 if healthy else 503)
