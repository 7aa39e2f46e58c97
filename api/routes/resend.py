"""POST /v1/orders/resend-email, checked in the contract's order: IP limit, token, user limit,
body, order, access, status. The body is read only after the limits counted the request, so
a malformed body still costs the sender one request."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api import keyed_requests
from api.deps import READ_POOL, bearer_token, client_ip, ip_limit_key, lookup_connection
from api.error_documents import ApiError, error_responses
from api.permissions import COORGANIZER_REQUIRED, valid_identifier
from api.publish import publish
from api.ratelimit import ResendLimits
from api.schemas import ResendAccepted, ResendRequest
from core.producer import Job
from core.settings import settings
from models.access import Lookup
from models.errors import Forbidden, InvalidTransition, NotFound
from models.resending import QueuedJob, request_resend
from models.status import is_resendable

log = logging.getLogger("ticketq.api.resend")
router = APIRouter(prefix="/v1/orders", tags=["orders"])
# Fewer threads than the read pool has connections (two left for other routes): a burst of resends
# queues on the event loop instead of in threads blocked on a pool checkout.
RESEND_THREADS = READ_POOL[0] - 2
NOT_RESENDABLE = "Only placed and completed orders have confirmation"
# Documented by hand: the body is parsed in the handler, after the limits and the token.
BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["data"], "additionalProperties": False,
    "properties": {"data": {
        "type": "object", "required": ["order"], "additionalProperties": False,
        "properties": {"order": {"type": "string", "minLength": 1, "maxLength": 64},
                       "user": {"description": "Accepted and ignored"}},
    }},
}}}}, "security": [{"bearer": []}]}


class MalformedJSON(ApiError):
    status = 400
    title = "Bad Request"


@router.post("/resend-email", status_code=202, response_model=ResendAccepted, openapi_extra=BODY_SCHEMA,
             responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503))
async def resend_email(request: Request) -> Response:
    """Queue the buyer's and attendees' confirmation emails again (co-organizers)."""
    request.state.data_envelope = True  # its body has the `data` envelope: error pointers keep it
    raw = await request.body()  # only parsed after the limits counted the request
    # The standard library's executor rather than anyio's to_thread: this endpoint is the one producers
    # hammer, and anyio's cancel scopes and limiter bookkeeping around each call cost more than the hop.
    run = functools.partial(contextvars.copy_context().run, _resend, request, raw)  # the request's key travels
    return await asyncio.get_running_loop().run_in_executor(threads(request.app), run)


def threads(app: FastAPI) -> ThreadPoolExecutor:
    """The app's resend threads, made on first use; the app's lifespan shuts them down."""
    pool: ThreadPoolExecutor | None = getattr(app.state, "resend_threads", None)
    if pool is None:
        pool = app.state.resend_threads = ThreadPoolExecutor(RESEND_THREADS, thread_name_prefix="resend")
    return pool


def _resend(request: Request, raw: bytes) -> Response:
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
        try:
            # With a key: the key's lock, the job, its audit row and the stored answer in one transaction.
            with keyed_requests.keyed_transaction(conn):
                job, response = _queue(conn, found, invalid)
        except keyed_requests.ClaimLost:
            return keyed_requests.lost()
        keyed_requests.committed()
    if job is None:
        return response
    identifier = found.order.identifier if found.order is not None else ""
    if job.joined:
        log.info("order %s: resend by %s joined the waiting job %s", identifier, found.caller.email, job.id)
    else:
        # Held back a moment, so a burst of requests (a double click, a retrying script) joins it.
        publish([Job(job.id, job.task, job.args, job.queue, countdown=settings.resend_join_seconds or None,
                     trace_context=job.trace_context)])
        log.info("order %s: confirmation resend requested by %s", identifier, found.caller.email)
    return response


def _queue(conn: sa.Connection, found: Lookup, invalid: Exception | None) -> tuple[QueuedJob | None, Response]:
    """The checks after the limits, then the job: (None, the answer) for a repeat of a keyed request."""
    # A key is claimed only once the request counted against the limits: a replay counts too
    # (contract: every request does), and a 429 is never stored, so the retry runs later.
    earlier = keyed_requests.begin(conn, found.caller.id)
    if earlier is not None:
        return None, earlier
    if invalid is not None:
        raise invalid
    order = found.order
    if order is None:
        raise NotFound("Order not found", pointer="/data/order")
    if not found.runs_event:  # access before status: nothing about an order leaks to an outsider but 403
        raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/order")
    if not is_resendable(order.status):
        raise InvalidTransition(NOT_RESENDABLE, pointer="/data/order")
    message = f"Confirmation emails for order {order.identifier} have been queued"
    response = JSONResponse({"status": True, "message": message}, status_code=202)
    job = request_resend(conn, order.id, order.identifier, by=found.caller.email)
    return job, keyed_requests.store(conn, response)


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
    """Pointers into the body as sent; a body that is not an object at all points at its `data`."""
    return ("body", *(loc or ("data",)))
