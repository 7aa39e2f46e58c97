"""The FastAPI application: routers, and every failure as a JSON:API error document."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import publish
from api.deps import trusted_networks
from api.errors import ERROR_RESPONSES, ApiError, domain_error, error_object, error_response, single_error
from api.guard import GuardMiddleware
from api.ratelimit import ResendLimits, resend_limits
from api.routes import checkins, events, health, orders, pages, resend
from core.settings import ConfigurationError, settings
from core.version import VERSION
from models.errors import OrderError

log = logging.getLogger("ticketq.api")


def create_app(limits: ResendLimits | None = None) -> FastAPI:
    """Build the app; `limits` defaults to the RESEND_LIMIT_* settings on REDIS_URL."""
    try:
        trusted_networks()
    except ValueError as exc:
        raise ConfigurationError(f"TRUSTED_PROXIES: {exc}") from None
    app = FastAPI(title="ticketq", version=VERSION, description="Orders, tickets and confirmations.",
                  responses=ERROR_RESPONSES, lifespan=_lifespan)
    app.state.resend_limits = limits or resend_limits(
        settings.require_redis_url(), settings.resend_limit_per_ip, settings.resend_limit_per_user)
    for router in (health.router, events.router, checkins.router, resend.router, orders.router, pages.router):
        app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(GuardMiddleware)  # outermost: 413 before anything reads the body, JSON 500s
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    publish.flush()  # what waits is sent, and noted as sent, before the process goes


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrderError, _order_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sqlalchemy.exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _database_down)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _database_down)  # no pooled connection came free


async def _order_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrderError)
    return domain_error(exc)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return single_error(exc.status, exc.detail, pointer=exc.pointer, title=exc.title, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return single_error(400, "Malformed JSON body", pointer="")
    return error_response(422, [_validation_object(e) for e in errors])


def _validation_object(error: dict[str, Any]) -> dict[str, Any]:
    where, *path = error.get("loc", ()) or ("body",)
    message = str(error.get("msg", "Invalid value"))
    if where == "body":
        return error_object(422, message, pointer="/data" + "".join(f"/{p}" for p in path))
    return error_object(422, message, parameter=".".join(str(p) for p in path) or str(where))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's body reader
        detail = "Malformed JSON body"
    return single_error(exc.status_code, detail, pointer="", headers=dict(exc.headers or {}))


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity error on %s: %s", request.url.path, exc)
    return single_error(409, "The change conflicts with a concurrent one; try again", pointer="/data")


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s: %s", request.url.path, exc)
    return single_error(503, "Database unavailable; try again shortly", pointer="", headers={"Retry-After": "5"})
