"""The stdlib HTTP servers the tests receive on (webhooks, OTLP traces): started in a thread on a
free loopback port, stopped by shutting down and closing."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WaitingServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for a slow answer still being written


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = WaitingServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
