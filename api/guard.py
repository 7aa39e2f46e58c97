"""The outermost layer: bodies over the size limit get 413, and anything unexpected becomes a
logged JSON:API 500 instead of a bare text page."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_documents import single_error

log = logging.getLogger("ticketq.api")

MAX_BODY_BYTES = 256 * 1024


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then passes on what comes next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()  # the disconnect, when it comes
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class GuardMiddleware:
    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_length(scope) > self.max_body:
            await self._too_large(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            await self._too_large(scope, receive, send)
            return
        replay = replaying(body, receive)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, replay, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await single_error(500, "Unexpected server error; it has been logged")(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (bounded, so buffering it is cheap), or None when it exceeds the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # client went away; the app will see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"Request body larger than {self.max_body} bytes"
        response = single_error(413, detail, title="Content Too Large", headers={"Connection": "close"})
        await response(scope, receive, send)


