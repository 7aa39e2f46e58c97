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


def domain_error(exc: OrderError) -> JSONResponse:
    status = domain_status(exc)
    return single_error(status, exc.detail, pointer=exc.pointer, title=DOMAIN_TITLE[status])


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorDocument, "description": HTTPStatus(status).phrase}
    for status in (400, 401, 403, 404, 409, 410, 413, 422, 429, 503)
}


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
                 headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(status, [error_object(status, detail, pointer=pointer, title=title)], headers)
