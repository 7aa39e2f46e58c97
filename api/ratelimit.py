"""Resend-email limits: moving windows in Redis, so every API process shares the same counts."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.error_documents import ApiError
from core.metrics import refused_resend
from core.redis_urls import limits_storage

log = logging.getLogger("ticketq.api.ratelimit")

KEY_PREFIX = "ticketq-limits"
LIMIT_EXCEEDED = "Limit for this action exceeded"


class LimitExceeded(ApiError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(LIMIT_EXCEEDED, pointer="")
        self.headers = {"Retry-After": str(retry_after)}


class LimitsUnavailable(ApiError):
    """Redis does not answer: refuse rather than let an unlimited flood of resends queue up."""

    status = 503
    title = "Service Unavailable"

    def __init__(self) -> None:
        super().__init__("Rate limiting is unavailable; try again shortly", pointer="")
        self.headers = {"Retry-After": "5"}


@dataclass
class Limit:
    """One named limit (e.g. resend per IP) applied to one key at a time."""

    name: str
    item: RateLimitItem
    limiter: MovingWindowRateLimiter

    def hit(self, key: str) -> None:
        """Count one request for `key`; raise 429 with Retry-After when the window is full."""
        try:
            if self.limiter.hit(self.item, self.name, key):
                return
            reset_at = self.limiter.get_window_stats(self.item, self.name, key).reset_time
        except StorageError as exc:
            log.warning("rate limit storage failed for %s: %s", self.name, exc.storage_error)
            raise LimitsUnavailable() from exc
        refused_resend(self.name.removeprefix("resend-"))  # "ip" or "user"
        raise LimitExceeded(max(1, math.ceil(reset_at - time.time())))


@dataclass
class ResendLimits:
    per_ip: Limit
    per_user: Limit


def redis_storage(redis_url: str) -> Storage:
    """Short socket timeouts: a dead Redis must answer a request with 503 quickly, not hang it."""
    uri, options = limits_storage(redis_url)  # Sentinel and TLS URLs in the form `limits` reads
    storage = storage_from_string(
        uri, key_prefix=KEY_PREFIX, wrap_exceptions=True,
        socket_timeout=2, socket_connect_timeout=2, **options,
    )
    assert isinstance(storage, Storage)
    return storage


def resend_limits(redis_url: str, per_ip: str, per_user: str) -> ResendLimits:
    limiter = MovingWindowRateLimiter(redis_storage(redis_url))
    return ResendLimits(
        per_ip=Limit("resend-ip", parse(per_ip), limiter),
        per_user=Limit("resend-user", parse(per_user), limiter),
    )
