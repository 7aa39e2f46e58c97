"""The middleware that counts and times every request (GET /metrics serves it: api/routes/scrape.py).

It is pure ASGI (BaseHTTPMiddleware would run each request in a task of its own): it
reads the route template Starlette's router leaves in the scope, so `/v1/orders/{identifier}` is
one series, not one per order, and an unmatched path is `<unmatched>`.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED = "<unmatched>"
# Any other method a client sends is "other": the label's values stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "") or UNMATCHED)
            method = scope.get("method", "")
            self._record(template, method if method in METHODS else "other", str(status),
                         time.perf_counter() - started)

    def _record(self, route: str, method: str, status: str, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # labels() once per series: the request path skips its lookup and lock
            children = self._children[key] = (HTTP_REQUESTS.labels(route, method, status),
                                              HTTP_DURATION.labels(route))
        children[0].inc()
        children[1].observe(seconds)
