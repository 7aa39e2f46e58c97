"""The domain's error family: stable codes and human texts. It knows nothing of HTTP: the API maps
each kind to a response in one place (api/error_documents.py)."""

from __future__ import annotations


class OrderError(Exception):
    """Base of every refusal the domain makes; `code` is stable, `detail` is for humans."""

    code = "order_error"

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


class Conflict(OrderError):
    """The row changed under us (a concurrent payment, expiry or cancellation won)."""

    code = "conflict"


class NotFound(OrderError):
    code = "not_found"


class Forbidden(OrderError):
    code = "forbidden"


class Gone(OrderError):
    """The thing asked for existed and is void for good (a cancelled or expired order's tickets)."""

    code = "gone"
