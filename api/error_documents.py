"""JSON:API error documents, and the API's own refusals (the domain's live in models.errors)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from models.errors import Conflict, Forbidden, Gone, NotFound, OrderError, SoldOut


class ApiError(Exception):
    """A refusal made by the HTTP layer itself (auth, limits, body size)."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, pointer: str | None = "/data") -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer
        self.headers: dict[str, str] = {}


class UnsupportedMediaType(ApiError):
    status = 415
    title = "Unsupported Media Type"

    def __init__(self, content_type: str) -> None:
        super().__init__(f"Send the body as JSON (Content-Type: application/json), not {content_type}", pointer="")


class Unauthorized(ApiError):
    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, pointer="")
        self.headers = {"WWW-Authenticate": "Bearer"}


# The domain's refusals as HTTP statuses (contract section 5); anything else the domain refuses is 422.
DOMAIN_STATUS: dict[type[OrderError], int] = {NotFound: 404, Forbidden: 403, SoldOut: 409, Conflict: 409,
                                               Gone: 410}


DOMAIN_TITLE = {404: "Not Found", 403: "Forbidden", 409: "Conflict", 410: "Gone", 422: "Unprocessable Entity"}


def domain_status(exc: OrderError) -> int:
    for kind in type(exc).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 422


def domain_error(exc: OrderError, where: Where | None = None) -> JSONResponse:
    status = domain_status(exc)
    pointer, parameter = where or (exc.pointer, None)
    return error_response(status, [error_object(status, exc.detail, pointer=pointer, parameter=parameter,
                                                title=DOMAIN_TITLE[status])])


Where = tuple[str | None, str | None]  # (source.pointer, source.parameter)
# What the domain calls the order and the event, and the path parameter that names them in a URL.
PATH_PARAMETERS = {"order": "identifier", "event": "event_id"}


def error_source(pointer: str | None, path_params: dict[str, str], *, enveloped: bool = False) -> Where:
    """The domain's pointers name fields of a `{"data": …}` envelope (the resend body's shape); other
    bodies have none, so "/data/x" becomes "/x", and a thing the URL names becomes that parameter."""
    if pointer is None or enveloped or not (pointer == "/data" or pointer.startswith("/data/")):
        return pointer, None
    pointer = pointer.removeprefix("/data")
    first = pointer.split("/")[1] if pointer else ""
    if PATH_PARAMETERS.get(first) in path_params:
        return None, PATH_PARAMETERS[first]
    return pointer, None


class ErrorSource(BaseModel):
    pointer: str | None = None
    parameter: str | None = None


class ErrorObject(BaseModel):
    status: str
    title: str
    detail: str
    source: ErrorSource | None = None


class ErrorDocument(BaseModel):
    """JSON:API error document: every failure of the API has this shape."""

    errors: list[ErrorObject]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of a route: only the failures it can answer, each a JSON:API document."""
    return {status: {"model": ErrorDocument, "description": HTTPStatus(status).phrase} for status in statuses}


# Every route that reads the database may answer 503 while it is away (contract section 8).
READ_ERRORS = (401, 503)
# What any JSON body may get: malformed (400), too large (413), not JSON (415), invalid (422).
BODY_ERRORS = (400, 401, 413, 415, 422, 503)


def error_object(status: int, detail: str, *, pointer: str | None = "", parameter: str | None = None,
                 title: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"status": str(status), "title": title or HTTPStatus(status).phrase, "detail": detail}
    if parameter is not None:
        obj["source"] = {"parameter": parameter}
    elif pointer is not None:
        obj["source"] = {"pointer": pointer}
    return obj


def error_response(status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status, headers=headers)


def single_error(status: int, detail: str, *, pointer: str | None = "", title: str | None = None,
                 headers: dict[str, str] | None = None, parameter: str | None = None) -> JSONResponse:
    return error_response(status, [error_object(status, detail, pointer=pointer, parameter=parameter, title=title)],
                          headers)
