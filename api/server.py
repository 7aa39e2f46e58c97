"""`ticketq api`: the app under uvicorn."""

from __future__ import annotations

from core import multiproc
from core.logformat import uvicorn_log_config
from core.settings import settings


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> int:
    """One process, or `workers` processes sharing the socket (one per core is a good start)."""
    import uvicorn
    import uvicorn.config

    settings.require_redis_url()  # a clear message here, not a traceback in every worker process
    if workers > 1:  # GET /metrics then sums every process's counts (prometheus_client multiprocess mode)
        multiproc.prepare("ticketq-api-metrics-")
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1;
    # TRUSTED_PROXIES (api.deps.client_ip) is the one place that decides whom to believe.
    # Idle keep-alive connections stay open 75 s (uvicorn's default is 5 s), longer than a load
    # balancer's or client pool's idle timeout, so the client side closes them first: a server that
    # closes a connection while a client sends its next request on it loses that request.
    logs = uvicorn_log_config(settings.log_level) if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, proxy_headers=False,
                log_level=settings.log_level.lower(), timeout_graceful_shutdown=10, timeout_keep_alive=75,
                log_config=logs)
    return 0
