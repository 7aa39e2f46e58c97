"""The figures Prometheus reads from PostgreSQL and Redis when it scrapes the API.

Computed at scrape time, not by beat every few seconds: a scrape then shows the database as it is
(no second copy that can go stale or die with beat), costs nothing between scrapes, and needs no
table of its own. The job counts read only unfinished rows, through their partial index; emails
and orders are whole-table counts that grow with the tables, so they are taken at most once per
SLOW_COUNTS_SECONDS and reused in between. A statement timeout bounds a scrape on a sick database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily

from core.jobs import BEAT_LOCK_KEY, QUEUE_OF
from core.redis_urls import redis_client
from models.base import utcnow
from models.census import JOB_STATES, count_emails, count_jobs, count_orders
from models.deliveries import DeliveryState, EmailKind
from models.status import OrderStatus

log = logging.getLogger("ticketq.api.metrics")

SLOW_COUNTS_SECONDS = 60.0
STATEMENT_TIMEOUT_MS = 2000


def families() -> list[GaugeMetricFamily]:
    """The census's families, empty: the jobs, oldest job, emails, orders, beat's lock, database."""
    return [
        GaugeMetricFamily("ticketq_jobs_unfinished", "Unfinished jobs in PostgreSQL by task and state "
                          "(due, sent, held, failed = waiting for its retry)", labels=["task", "state"]),
        GaugeMetricFamily("ticketq_job_oldest_unstarted_age_seconds", "Age of the oldest job that is due and "
                          "that no worker runs, per queue (0: none)", labels=["queue"]),
        GaugeMetricFamily("ticketq_emails", "Email deliveries by kind and state", labels=["kind", "state"]),
        GaugeMetricFamily("ticketq_orders", "Orders by status", labels=["status"]),
        GaugeMetricFamily("ticketq_beat_lock_held", "1 while a beat holds the scheduler lock in Redis"),
        GaugeMetricFamily("ticketq_database_up", "1 when the scrape could read PostgreSQL"),
    ]


class Census:
    """A prometheus_client custom collector (README "Metrics"): every family, zeros included, so a
    series never vanishes when its count drops to nothing."""

    def __init__(self, engine: sa.Engine, redis_url: str | None) -> None:
        self.engine = engine
        self.redis = redis_client(redis_url, socket_timeout=1, socket_connect_timeout=1) if redis_url else None
        self._lock = threading.Lock()
        self._slow: tuple[float, dict[tuple[str, str], int], dict[str, int]] | None = None

    def describe(self) -> Iterable[Any]:
        return families()  # names only, without a query at registration

    def collect(self) -> Iterator[Any]:
        jobs, oldest, emails, orders, beat, database = families()
        read: list[GaugeMetricFamily] = []
        try:
            self._fill(jobs, oldest, emails, orders)
            read = [jobs, oldest, emails, orders]
        except sa.exc.SQLAlchemyError as exc:  # no half-read figures: the four are left out
            log.warning("metrics: PostgreSQL unreadable: %s", exc)
        database.add_metric([], 1 if read else 0)
        beat.add_metric([], self._beat_lock())
        yield from [*read, beat, database]

    def _fill(self, jobs: GaugeMetricFamily, oldest: GaugeMetricFamily, emails: GaugeMetricFamily,
              orders: GaugeMetricFamily) -> None:
        with self.engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            now = utcnow()
            census = count_jobs(conn, now)
            email_counts, order_counts = self._slow_counts(conn)
        tasks = sorted(set(QUEUE_OF) | {task for task, _ in census.counts})
        for task in tasks:
            for state in JOB_STATES:
                jobs.add_metric([task, state], census.counts.get((task, state), 0))
        for queue in sorted(set(QUEUE_OF.values()) | set(census.oldest_unstarted)):
            since = census.oldest_unstarted.get(queue)
            oldest.add_metric([queue], max((now - since).total_seconds(), 0.0) if since else 0.0)
        for kind in EmailKind:
            for state in DeliveryState:
                emails.add_metric([kind.value, state.value], email_counts.get((kind.value, state.value), 0))
        for status in OrderStatus:
            orders.add_metric([status.value], order_counts.get(status.value, 0))

    def _slow_counts(self, conn: sa.Connection) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        with self._lock:
            if self._slow is None or time.monotonic() - self._slow[0] > SLOW_COUNTS_SECONDS:
                self._slow = (time.monotonic(), count_emails(conn), count_orders(conn))
            return self._slow[1], self._slow[2]

    def _beat_lock(self) -> int:
        if self.redis is None:
            return 0
        try:
            return 1 if self.redis.exists(BEAT_LOCK_KEY) else 0
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics: Redis unreadable for the beat lock: %s", exc)
            return 0
