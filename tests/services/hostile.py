"""Hostile strings and a loopback HTTP server that counts every request made to it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CountingServer:
    def __init__(self) -> None:
        self.paths: list[str] = []
        hits = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/css")
                self.end_headers()
                self.wfile.write(b"body { color: red }")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def counting_server() -> Iterator[CountingServer]:
    counter = CountingServer()
    thread = threading.Thread(target=counter.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        counter.server.shutdown()
        counter.server.server_close()


def hostile_names(url: str) -> list[str]:
    """Names that would be markup, template code, headers or fetches if anything trusted them."""
    return [
        '<img src="file:///etc/passwd">',
        f'<img src="{url}/img.png">',
        f'<link rel="stylesheet" href="{url}/style.css">',
        f'<style>@import url("{url}/import.css"); body {{ background: url(file:///etc/hostname) }}</style>',
        f'<div style="background: url({url}/bg.png)">{{{{ 7*7 }}}}</div>',
        "Eve\r\nBcc: x@evil.example",
    ]
