"""GET /metrics: the Prometheus text format (README "Metrics"); METRICS_BASIC_AUTH=user:pass protects it."""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from api.gauges import Census
from core.settings import settings
from models.db import get_engine

router = APIRouter(tags=["operations"])


def metrics_registry() -> CollectorRegistry:
    """This process's metrics (or, with PROMETHEUS_MULTIPROC_DIR set, every API process's: `ticketq api
    --workers N`) and the census from PostgreSQL and Redis."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)  # a registry is a collector: the default one, with process metrics
    registry.register(Census(get_engine(), settings.redis_url))
    return registry


def _authorized(request: Request) -> bool:
    """METRICS_BASIC_AUTH=user:pass, when set, is required (compared in constant time)."""
    if settings.metrics_basic_auth is None:
        return True
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = settings.metrics_basic_auth.get_secret_value().encode()
    return scheme.lower() == "basic" and secrets.compare_digest(given, expected)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Plain `def`: the census queries run in the threadpool, never on the event loop."""
    if not _authorized(request):
        return Response("Unauthorized\n", status_code=401, media_type="text/plain",
                        headers={"WWW-Authenticate": 'Basic realm="metrics"'})
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = request.app.state.metrics_registry = metrics_registry()
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
