"""The ASGI side of Idempotency-Key (api/keyed_requests.py has the handler side): read and check the key,
fingerprint the request, and after the app store or free what the handler left open."""

from __future__ import annotations

import asyncio
import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import read_connection
from api.guard import replaying
from api.keyed_requests import HEADER, KEPT_HEADERS, METHODS, VALID_KEY, KeyedRequest, current, keeps, refusal
from models.idempotency import store_answer


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256(f"{method}\n{path}?".encode() + query + b"\n" + body)
    return digest.hexdigest()


class IdempotencyMiddleware:
    """Reads the key and the body, and after the app stores or frees what the handler left open."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key")
        if (scope["type"] != "http" or key is None or scope["method"] not in METHODS
                or not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        if not VALID_KEY.fullmatch(key):
            await refusal(400, f"{HEADER} must be 1 to 255 printable ASCII characters")(scope, receive, send)
            return
        body = await _read(receive)
        keyed = KeyedRequest(key, fingerprint(scope["method"], scope["path"], scope.get("query_string", b""), body),
                             scope)
        token = current.set(keyed)
        messages: list[Message] = []

        async def hold(message: Message) -> None:
            messages.append(message)  # held until the answer is stored or the key freed

        try:
            await self.app(scope, replaying(body, receive), hold)
        except Exception:
            if keyed.claim is not None and not keyed.answered:  # a bug's 500 (GuardMiddleware): the key is free
                await _in_thread(keyed, [])
            raise
        finally:
            current.reset(token)
        if keyed.claim is not None and not keyed.answered:
            await _in_thread(keyed, messages)
        for message in messages:
            await send(message)


async def _in_thread(keyed: KeyedRequest, messages: list[Message]) -> None:
    # asyncio's default executor: anyio's to_thread costs more around each call than the store itself.
    await asyncio.get_running_loop().run_in_executor(None, _finish, keyed, messages)


def _finish(keyed: KeyedRequest, messages: list[Message]) -> None:
    """An answer given without its effect committing (a refusal after the claim) is kept, unless it is
    one to retry (5xx, 429, 503). Its transaction ended with the lock: another request with the key
    may have run meanwhile, and then its answer stays (one statement decides)."""
    assert keyed.claim is not None
    start: Message = next((m for m in messages if m["type"] == "http.response.start"), {"status": 500})
    status = int(start["status"])
    if not keeps(status):
        return
    headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    with read_connection() as conn:  # autocommit on PostgreSQL: one statement, one round trip
        store_answer(conn, keyed.claim, status, {k: headers[k] for k in KEPT_HEADERS if k in headers}, body)
        if conn.in_transaction():  # SQLite
            conn.commit()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
