"""POST /v1/orders/resend-email, checked in the contract's order: IP limit, token, user limit,
body, order, access, status. The body is read only after the limits counted the request, so
a malformed body still costs the sender one request."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope, Send

from api.access import COORGANIZER_REQUIRED, valid_identifier
from api.deps import bearer_token, client_ip, ip_limit_key, lookup_connection
from api.errors import ApiError
from api.publish import publish
from api.ratelimit import ResendLimits
from api.schemas import ResendAccepted, ResendRequest
from core.producer import Job
from models.errors import Forbidden, InvalidTransition, NotFound
from models.ordering import request_resend
from models.status import is_resendable

log = logging.getLogger("ticketq.api.resend")
router = APIRouter(prefix="/v1/orders", tags=["orders"])
PATH = "/v1/orders/resend-email"
# The threads of the direct path (`answer`): 8, fewer than the read pool's 10 connections, so a thread
# never waits for one. With anyio's 40, threads only queued on the GIL and the pool: bench P2 on
# 2026-12-04, 4 interleaved pairs at load 0.5-3.5, 1.25-1.79 ms of CPU per request with 8 against
# 1.53-1.77 with 40 (one tie); the round trips overlap as well with 8 at 16 clients.
_threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="resend")
NOT_RESENDABLE = "Only placed and completed orders have confirmation"
# Documented by hand: the body is parsed in the handler, after the limits and the token.
BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["data"], "additionalProperties": False,
    "properties": {"data": {
        "type": "object", "required": ["order"], "additionalProperties": False,
        "properties": {"order": {"type": "string", "minLength": 1, "maxLength": 64},
                       "user": {"description": "Accepted and ignored"}},
    }},
}}}}}


class MalformedJSON(ApiError):
    status = 400
    title = "Bad Request"


@router.post("/resend-email", status_code=202, response_model=ResendAccepted, openapi_extra=BODY_SCHEMA)
async def resend_email(request: Request) -> JSONResponse:
    """Queue the buyer's and attendees' confirmation emails again (co-organizers)."""
    raw = await request.body()  # already buffered by the guard; only parsed after the limits
    return await run_in_threadpool(_resend, request, raw)


async def answer(scope: Scope, raw: bytes, send: Send) -> None:
    """The same request answered without FastAPI's router and its inner middleware (the guard calls this
    for POST PATH with the body it buffered; bench P2: the per-request machinery cost about as much as
    a statement). `_resend` runs in one hop to a plain thread pool, and what it raises is answered by
    the handler the app registered for it, looked up as Starlette's ExceptionMiddleware does: the
    same status, body and headers as through the route, which stays for the OpenAPI document (and
    for a caller of the app without the guard)."""
    request = Request(scope)
    try:
        response = await asyncio.get_running_loop().run_in_executor(_threads, _resend, request, raw)
    except Exception as exc:
        handler = _handler_for(request.app.exception_handlers, exc)
        if handler is None:
            raise  # the guard answers 500 and logs it, as for any route
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
    await response(scope, _no_receive, send)


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Any:
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


async def _no_receive() -> Any:  # a response reads nothing; the guard already read the body
    raise RuntimeError("the request body was already read")


def _resend(request: Request, raw: bytes) -> JSONResponse:
    """Everything in one worker thread: two Redis round trips (the limits), one database round trip
    for the checks (token → user, order, role, status) and one for the job and its audit row, on
    one connection; then the job goes to this process's sender (api/publish.py)."""
    limits: ResendLimits = request.app.state.resend_limits
    limits.per_ip.hit(ip_limit_key(client_ip(request)))
    token = bearer_token(request)
    body, invalid = _parse(raw)
    identifier = body.data.order if body is not None and valid_identifier(body.data.order) else None
    with lookup_connection(token, identifier=identifier) as (found, conn):
        limits.per_user.hit(str(found.caller.id))
        if invalid is not None:
            raise invalid
        order = found.order
        if order is None:
            raise NotFound("Order not found", pointer="/data/order")
        if not found.runs_event:  # access before status: nothing about an order leaks to an outsider but 403
            raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/order")
        if not is_resendable(order.status):
            raise InvalidTransition(NOT_RESENDABLE, pointer="/data/order")
        job = request_resend(conn, order.id, order.identifier, by=found.caller.email)
    publish([Job(job.id, job.task, job.args, job.queue)])
    log.info("order %s: confirmation resend requested by %s", order.identifier, found.caller.email)
    message = f"Confirmation emails for order {order.identifier} have been queued"
    return JSONResponse({"status": True, "message": message}, status_code=202)


def _parse(raw: bytes) -> tuple[ResendRequest | None, Exception | None]:
    """The body, or the error to answer with once the checks before it have passed."""
    try:
        payload: Any = json.loads(raw)
    except (ValueError, RecursionError):  # undecodable bytes, bad syntax, absurd nesting
        return None, MalformedJSON("Malformed JSON body", pointer="")
    try:
        return ResendRequest.model_validate(payload), None
    except ValidationError as exc:
        return None, RequestValidationError([{**e, "loc": _body_loc(e["loc"])} for e in exc.errors()])


def _body_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """This body already has its `data` envelope; pointers elsewhere get "/data" added in front."""
    return ("body", *loc[1:]) if loc[:1] == ("data",) else ("body", *loc)
