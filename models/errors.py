"""The domain's error family: stable codes and human texts, mapped to HTTP in one place (api/)."""

from __future__ import annotations


class OrderError(Exception):
    """Base of every refusal the domain makes; `code` is stable, `detail` is for humans."""

    code = "order_error"
    http_status = 422
    title = "Unprocessable Entity"

    def __init__(self, detail: str, *, pointer: str = "/data") -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer


class InvalidTransition(OrderError):
    code = "invalid_transition"


class UnknownPaymentMode(OrderError):
    code = "unknown_payment_mode"


class InvalidInput(OrderError):
    code = "invalid_input"


class SoldOut(OrderError):
    code = "sold_out"
    http_status = 409
    title = "Conflict"


class Conflict(OrderError):
    """The row changed under us (a concurrent payment, expiry or cancellation won)."""

    code = "conflict"
    http_status = 409
    title = "Conflict"


class NotFound(OrderError):
    code = "not_found"
    http_status = 404
    title = "Not Found"


class Forbidden(OrderError):
    code = "forbidden"
    http_status = 403
    title = "Forbidden"
