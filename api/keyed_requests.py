"""Idempotency-Key on every POST, PATCH and DELETE under /v1 (contract section 10).

The middleware (api/idempotency_middleware.py) reads the key and fingerprints the request (method,
path, body); the handler, in its own thread, claims (user, key) once it knows the user (`call_keyed`,
the resend route after its limits): the key's lock, taken in the transaction of the effect. A request
that runs writes its answer in that transaction: `commit_and_publish` only flushes while a claim is
open, and the key's row is written before the one real commit. A refusal raised before any effect
(4xx) is stored by the middleware afterwards; 5xx, 429 and 503 answers are not stored, so the retry
runs again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.types import Scope

from api.error_documents import error_object, error_response
from api.publish import DEFER_COMMIT, commit_and_publish
from core.settings import settings
from models.access import Lookup
from models.idempotency import Claim, Verdict, claim_key, store_answer
from models.users import Caller

HEADER = "Idempotency-Key"
METHODS = frozenset({"POST", "PATCH", "DELETE"})
VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
KEPT_HEADERS = ("content-type", "location", "retry-after")
NOT_KEPT = frozenset({429, 503})
BUSY_RETRY_AFTER = "1"


@dataclass
class KeyedRequest:
    key: str
    fingerprint: str
    scope: Scope
    claim: Claim | None = None
    answered: bool = False  # the answer was stored with the effect, or is a replay or a refusal


current: ContextVar[KeyedRequest | None] = ContextVar("idempotency_request", default=None)


def keeps(status: int) -> bool:
    return status < 500 and status not in NOT_KEPT


def refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    error = error_object(status, detail, pointer=None)
    error["source"] = {"header": HEADER}  # JSON:API 1.1: the header that caused it
    return error_response(status, [error], headers)


def begin(db: Session | sa.Connection, user_id: int) -> Response | None:
    """Claim this request's key for `user_id` in `db`'s transaction, which must then run the effect:
    None when it is to run (or carries no key), else the answer to give instead (the stored one, 409
    while another request with the key runs, 422 for another request)."""
    keyed = current.get()
    if keyed is None or keyed.claim is not None:
        return None
    claim = claim_key(db, user_id, keyed.key, keyed.fingerprint,
                      timedelta(seconds=settings.idempotency_key_ttl_seconds))
    if claim.verdict is Verdict.RUN:
        keyed.claim = claim
        return None
    keyed.answered = True
    if claim.verdict is Verdict.REPLAY:
        headers = {**(claim.headers or {}), "Idempotent-Replayed": "true"}
        return Response(claim.body, status_code=claim.status_code, headers=headers)
    if claim.verdict is Verdict.MISMATCH:
        return refusal(422, f"This {HEADER} was already used with a different method, path or body")
    return busy()


def store(db: Session | sa.Connection, response: Response) -> Response:
    """Write `response` into the key's row in `db`'s open transaction (the caller commits); when
    another request's answer got there first, ClaimLost: the caller rolls back and answers 409."""
    keyed = current.get()
    if keyed is None or keyed.claim is None or not keeps(response.status_code):
        return response
    if not store_answer(db, keyed.claim, response.status_code, _kept_headers(response), bytes(response.body)):
        raise ClaimLost()
    return response


def committed() -> None:
    """The effect and its stored answer committed: the middleware has nothing left to do."""
    keyed = current.get()
    if keyed is not None and keyed.claim is not None:
        keyed.answered = True


class ClaimLost(Exception):
    """Another request with the key stored its answer first: this request's effect must not commit."""


def busy() -> JSONResponse:
    return refusal(409, f"A request with this {HEADER} is still being processed; retry shortly",
                   {"Retry-After": BUSY_RETRY_AFTER})


def lost() -> JSONResponse:
    """The answer when another request's answer was stored first (this effect was rolled back)."""
    committed()  # nothing is left for the middleware: the row belongs to the other request
    return busy()


def keyed_transaction(conn: sa.Connection) -> Any:
    """For a request with a key: a real transaction on a connection that is in autocommit (the API's
    reads on PostgreSQL), holding the key's lock, the effect and its stored answer; else nothing."""
    return _transaction(conn) if current.get() is not None else nullcontext()


@contextmanager
def _transaction(conn: sa.Connection) -> Iterator[None]:
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        conn.execution_options(isolation_level="READ COMMITTED")
    try:
        with conn.begin():
            yield
    finally:
        if postgres and not conn.invalidated and not conn.closed:
            conn.execution_options(isolation_level="AUTOCOMMIT")


def call_keyed(handler: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a handler that has a `session` under the request's key, if it carries one."""
    session: Session = kwargs["session"]
    keyed, user = current.get(), _caller(kwargs)
    if keyed is None or user is None:
        return handler(*args, **kwargs)
    replay = begin(session, user.id)
    if replay is not None:
        return replay
    session.info[DEFER_COMMIT] = True
    try:
        response = _render(keyed.scope, handler(*args, **kwargs))
        store(session, response)
    except ClaimLost:
        session.rollback()
        return lost()
    finally:
        session.info.pop(DEFER_COMMIT, None)
    commit_and_publish(session)
    committed()
    return response


def _caller(kwargs: dict[str, Any]) -> Caller | None:
    for value in kwargs.values():
        if isinstance(value, Caller):
            return value
        if isinstance(value, Lookup):
            return value.caller
    return None


def _render(scope: Scope, result: Any) -> Response:
    """The handler's answer as FastAPI would send it, so its bytes can be stored before the commit."""
    if isinstance(result, Response):
        return result
    route = scope.get("route")
    status = getattr(route, "status_code", None) or 200
    if status == 204:
        return Response(status_code=204)
    if isinstance(result, BaseModel):  # pydantic's own JSON mode: what jsonable_encoder returns, without its walk
        return JSONResponse(result.model_dump(mode="json", by_alias=True), status_code=status)
    return JSONResponse(jsonable_encoder(result), status_code=status)


def _kept_headers(response: Response) -> dict[str, str]:
    return {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}


