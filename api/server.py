"""`ticketq api`: the app under uvicorn."""

from __future__ import annotations

from ticketq.settings import settings


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    import uvicorn

    from api.app import create_app

    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1;
    # TRUSTED_PROXIES (api.deps.client_ip) is the one place that decides whom to believe.
    uvicorn.run(create_app(), host=host, port=port, proxy_headers=False,
                log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
    return 0
