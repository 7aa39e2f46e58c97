"""Every Prometheus metric ticketq records, and the small calls that record them (README "Metrics").

The API's metrics live in prometheus_client's default registry (api/request_metrics.py serves them). The
workers' are made with `registry=None`: a worker serving WORKER_METRICS_PORT runs in multiprocess
mode, where every process writes its values to files that worker/metrics_server.py reads; in any other
process they are recorded in memory for nobody, which costs next to nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

# --- the API -------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("ticketq_http_requests", "HTTP requests answered, by route template, method and status",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("ticketq_http_request_duration_seconds", "Time to answer an HTTP request, by route",
                          ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RESEND_REFUSALS = Counter("ticketq_resend_refusals", "Resend requests refused by a rate limit (ip, user)",
                          ["limit"])

# --- the workers ---------------------------------------------------------------------------------
CONFIRMATION_LAG = Histogram(
    "ticketq_confirmation_lag_seconds",
    "From an order's completion (or placement) to the acceptance of the last email of its confirmation",
    buckets=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600, 4 * 3600), registry=None)
RENDER_SECONDS = Histogram(
    "ticketq_render_seconds",
    "PDF work per document kind: 'layout' is the one WeasyPrint layout of an order, the others cutting "
    "that document from it", ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=None)
SMTP_SENDS = Counter("ticketq_smtp_sends", "Messages handed to a mail server, by outcome and server",
                     ["outcome", "server"], registry=None)
RELAY_RESENT = Counter("ticketq_relay_resent_jobs", "Jobs the outbox relay sent again, by why they were lost",
                       ["cause"], registry=None)
EXPIRY_SWEEP = Histogram("ticketq_expiry_sweep_duration_seconds", "Duration of beat's expiry sweeps",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=None)
# "max" across processes: the latest sweep of any pool child, kept after that child exits.
EXPIRY_LAST = Gauge("ticketq_expiry_sweep_last_success_timestamp_seconds",
                    "Unix time the last expiry sweep finished", registry=None, multiprocess_mode="max")
ORDERS_EXPIRED = Counter("ticketq_orders_expired", "Orders the expiry sweep expired, by the status they had",
                         ["status"], registry=None)

SMTP_OUTCOMES = ("sent", "temporary", "permanent", "unreachable")
RELAY_CAUSES = ("broker_emptied", "failover", "lease_expired", "holder_dead", "queue_lost")


def refused_resend(limit: str) -> None:
    """A resend refused by the per-`limit` window ("ip" or "user")."""
    RESEND_REFUSALS.labels(limit).inc()


def smtp_outcome(outcome: str, server: str) -> None:
    """One message handed to `server` (host:port): sent, temporary, permanent or unreachable."""
    SMTP_SENDS.labels(outcome, server).inc()


def relay_resent(cause: str, count: int) -> int:
    """Count `count` jobs sent again for `cause`; returns `count`, so a caller can wrap its query."""
    if count:
        RELAY_RESENT.labels(cause).inc(count)
    return count


def confirmation_lag(seconds: float) -> None:
    CONFIRMATION_LAG.observe(max(seconds, 0.0))


@contextmanager
def rendering(kind: str) -> Iterator[None]:
    """Time one piece of PDF work of document `kind` (wall clock: what a waiting buyer feels)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        RENDER_SECONDS.labels(kind).observe(time.perf_counter() - started)


@contextmanager
def expiry_sweep() -> Iterator[None]:
    """Time a sweep; only a finished one moves the last-success time."""
    started = time.perf_counter()
    yield
    EXPIRY_SWEEP.observe(time.perf_counter() - started)
    EXPIRY_LAST.set(time.time())


def orders_expired(counts: dict[str, int]) -> None:
    for status, count in counts.items():
        ORDERS_EXPIRED.labels(status).inc(count)
