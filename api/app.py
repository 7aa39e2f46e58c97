"""The FastAPI application: routers, and every failure as a JSON:API error document."""

from __future__ import annotations

import json
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
from api.error_documents import (
    ApiError,
    UnsupportedMediaType,
    Where,
    domain_error,
    error_object,
    error_response,
    error_source,
    single_error,
)
from api.guard import GuardMiddleware
from api.idempotency_middleware import IdempotencyMiddleware
from api.ratelimit import ResendLimits, resend_limits
from api.request_metrics import MetricsMiddleware
from api.routes import (
    checkin_endpoints,
    event_endpoints,
    exports,
    health,
    languages,
    order_endpoints,
    pages,
    resend,
    scrape,
    signin,
    webhook_endpoints,
)
from core.settings import ConfigurationError, settings
from core.tracing import setup_tracing
from core.version import VERSION
from models.db import trace_engines
from models.errors import OrderError

log = logging.getLogger("ticketq.api")
DESCRIPTION = (
    "Orders, tickets and confirmations. Authenticate with `Authorization: Bearer <token>` (the token "
    "`ticketq users create EMAIL` prints; **Authorize** above). Every failure is a JSON:API error document: "
    "`source.pointer` names the field of the body sent, `source.parameter` the path or query parameter.")


def create_app(limits: ResendLimits | None = None) -> FastAPI:
    """Build the app; `limits` defaults to the RESEND_LIMIT_* settings on REDIS_URL."""
    try:
        trusted_networks()
    except ValueError as exc:
        raise ConfigurationError(f"TRUSTED_PROXIES: {exc}") from None
    app = FastAPI(title="ticketq", version=VERSION, description=DESCRIPTION, lifespan=_lifespan)
    app.state.resend_limits = limits or resend_limits(
        settings.require_redis_url(), settings.resend_limit_per_ip, settings.resend_limit_per_user)
    # Routes are matched in this order: the busiest endpoint first (and before orders' /{identifier}).
    for router in (resend.router, order_endpoints.router, event_endpoints.router, health.router, scrape.router,
                   checkin_endpoints.router, exports.router, pages.router, signin.router, webhook_endpoints.router,
                   languages.router):
        app.include_router(router)
    _install_error_handlers(app)
    _document_own_errors_only(app)
    app.add_middleware(IdempotencyMiddleware)  # inside the guard: bodies are bounded before it reads them
    app.add_middleware(GuardMiddleware)  # outermost: 413 before anything reads the body, JSON 500s
    app.add_middleware(MetricsMiddleware)  # around the guard: counts every answer, its 413s and 500s too
    _trace(app)
    return app


def _trace(app: FastAPI) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set: a span per request, with its statements, outermost of all."""
    if setup_tracing("ticketq-api") is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    trace_engines()
    FastAPIInstrumentor.instrument_app(app)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    pool = getattr(app.state, "resend_threads", None)  # made by the first resend, if any
    if pool is not None:
        pool.shutdown(wait=True)
    publish.flush()  # what waits is sent, and noted as sent, before the process goes


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OrderError, _order_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sqlalchemy.exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _database_down)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _database_down)  # no pooled connection came free


def _document_own_errors_only(app: FastAPI) -> None:
    """FastAPI adds its own 422 (a shape ticketq never answers) to every route with parameters; each
    route lists the JSON:API errors it can answer itself (api/error_documents.py `error_responses`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    for status, response in list(responses.items()):
                        if "HTTPValidationError" in json.dumps(response):
                            del responses[status]
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        assert app.openapi_schema is not None  # build() stored it
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _where(request: Request, pointer: str | None) -> Where:
    # The resend body has the `{"data": …}` envelope the domain's pointers assume (api/routes/resend.py).
    enveloped = bool(getattr(request.state, "data_envelope", False))
    return error_source(pointer, dict(request.path_params), enveloped=enveloped)


async def _order_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrderError)
    return domain_error(exc, _where(request, exc.pointer))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    pointer, parameter = _where(request, exc.pointer)
    return single_error(exc.status, exc.detail, pointer=pointer, parameter=parameter, title=exc.title,
                        headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return single_error(400, "Malformed JSON body", pointer="")
    # FastAPI hands a body it did not read as JSON (no or another Content-Type) to the model as bytes.
    content_type = request.headers.get("content-type") or ""
    if not _is_json(content_type) and any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing"
                                          for e in errors):
        refused = UnsupportedMediaType(content_type.split(";")[0].strip() or "a body without Content-Type")
        return single_error(415, refused.detail, pointer="", title=refused.title)
    return error_response(422, [_validation_object(e) for e in errors])


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _validation_object(error: dict[str, Any]) -> dict[str, Any]:
    """Pointers in the shape of the body sent; messages without pydantic's "Value error, " prefix."""
    where, *path = error.get("loc", ()) or ("body",)
    message = str(error.get("msg", "Invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message[:1].upper() + message[1:]
    if where == "body":
        return error_object(422, message, pointer="".join(f"/{p}" for p in path))
    return error_object(422, message, parameter=".".join(str(p) for p in path) or str(where))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's body reader
        detail = "Malformed JSON body"
    return single_error(exc.status_code, detail, pointer="", headers=dict(exc.headers or {}))


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity error on %s: %s", request.url.path, exc)
    return single_error(409, "The change conflicts with a concurrent one; try again", pointer="")


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s: %s", request.url.path, exc)
    return single_error(503, "Database unavailable; try again shortly", pointer="", headers={"Retry-After": "5"})
