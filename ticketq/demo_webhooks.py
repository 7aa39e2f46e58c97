"""The demo's webhook receiver: a few lines of stdlib http.server that verify every signature with
standardwebhooks and count the notifications by type, once per webhook-id (a retry repeats it)."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

TYPES = ("order.placed", "order.completed", "order.expired", "order.cancelled", "email.sent", "email.failed")


class DemoReceiver:
    def __init__(self) -> None:
        self.verifier: Webhook | None = None
        self.by_type: Counter[str] = Counter()
        self.seen: set[str] = set()
        self.bad_signatures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(receiver.take(body, dict(self.headers.items())))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="demo-webhooks", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        if self.verifier is None:
            return 503  # not registered yet: ticketq retries
        try:
            payload = self.verifier.verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.bad_signatures += 1
            return 400
        with self._lock:
            webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
            if webhook_id not in self.seen:
                self.seen.add(webhook_id)
                self.by_type[str(payload["type"])] += 1
        return 204

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
