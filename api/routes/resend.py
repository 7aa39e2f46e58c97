"""POST /v1/orders/resend-email, checked in the contract's order: IP limit, token, user limit,
body, order, access, status. The body is read only after the limits counted the request, so
a malformed body still costs the sender one request."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.access import find_order, require_coorganizer
from api.deps import DbSession, ResendCaller
from api.errors import ApiError
from api.publish import commit_and_publish
from api.schemas import ResendAccepted, ResendRequest
from models.errors import InvalidTransition
from models.ordering import record
from models.outbox import ORDERS_QUEUE, RESEND_TASK, enqueue_job
from models.status import is_resendable
from models.users import User

log = logging.getLogger("ticketq.api.resend")
router = APIRouter(prefix="/v1/orders", tags=["orders"])
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
async def resend_email(request: Request, user: ResendCaller, session: DbSession) -> ResendAccepted:
    """Queue the buyer's and attendees' confirmation emails again (co-organizers)."""
    body = _parse(await request.body())
    identifier = await run_in_threadpool(_queue_resend, session, user, body.data.order)
    return ResendAccepted(status=True, message=f"Confirmation emails for order {identifier} have been queued")


def _parse(raw: bytes) -> ResendRequest:
    try:
        payload: Any = json.loads(raw)
    except (ValueError, RecursionError):  # undecodable bytes, bad syntax, absurd nesting
        raise MalformedJSON("Malformed JSON body", pointer="") from None
    try:
        return ResendRequest.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": _body_loc(e["loc"])} for e in exc.errors()]) from None


def _body_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """This body already has its `data` envelope; pointers elsewhere get "/data" added in front."""
    return ("body", *loc[1:]) if loc[:1] == ("data",) else ("body", *loc)


def _queue_resend(session: Session, user: User, identifier: str) -> str:
    """Look up, check access, then status: nothing about an order leaks to an outsider but 403."""
    order = find_order(session, identifier)
    require_coorganizer(session, user, order.event_id, pointer="/data/order")
    if not is_resendable(order.status):
        raise InvalidTransition(NOT_RESENDABLE, pointer="/data/order")
    enqueue_job(session, RESEND_TASK, [order.identifier, user.email], ORDERS_QUEUE)
    record(session, order, "resend-requested", actor=user.email)
    commit_and_publish(session)
    log.info("order %s: confirmation resend requested by %s", order.identifier, user.email)
    return order.identifier
