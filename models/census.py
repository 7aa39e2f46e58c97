"""Counts for the metrics scrape (api/request_metrics.py): unfinished jobs, emails and orders, read from
PostgreSQL, the truth, so the figures hold even when Redis lost its data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from models.deliveries import EmailDelivery
from models.orders import Order
from models.outbox import OutboxJob

JOB_STATES = ("due", "sent", "held", "failed")


@dataclass
class JobCensus:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (task, state) -> unfinished jobs
    oldest_unstarted: dict[str, datetime] = field(default_factory=dict)  # queue -> waiting since


def _job_state(now: datetime) -> sa.ColumnElement[str]:
    """held: a live worker's lease; sent: in the broker (or lost by it) and nobody runs it; failed: a
    try failed and the job waits for its retry time; due: to be sent now."""
    o = OutboxJob
    return sa.case(
        (o.lease_until >= now, "held"),
        (o.published_at.is_not(None), "sent"),
        (o.run_after > now, "failed"),
        else_="due",
    )


def count_jobs(conn: sa.Connection, now: datetime) -> JobCensus:
    """One GROUP BY over the unfinished rows only: `done_at IS NULL` is the partial index's predicate
    (ix_outbox_unfinished), so finished jobs kept for inspection cost nothing here."""
    o = OutboxJob
    state = _job_state(now).label("state")
    # When it became due: its retry time, else its last start (a lease that ran out), else its creation.
    since = sa.func.min(sa.func.coalesce(o.run_after, o.started_at, o.created_at)).label("since")
    rows = conn.execute(sa.select(o.task, o.queue, state, sa.func.count().label("n"), since)
                        .where(o.done_at.is_(None)).group_by(o.task, o.queue, state))
    census = JobCensus()
    for task, queue, job_state, n, waiting_since in rows:
        key = (str(task), str(job_state))
        census.counts[key] = census.counts.get(key, 0) + int(n)
        if job_state in ("due", "sent") and waiting_since is not None:
            previous = census.oldest_unstarted.get(queue)
            census.oldest_unstarted[str(queue)] = min(previous, waiting_since) if previous else waiting_since
    return census


def count_emails(conn: sa.Connection) -> dict[tuple[str, str], int]:
    """(kind, state) -> deliveries."""
    d = EmailDelivery
    rows = conn.execute(sa.select(d.kind, d.state, sa.func.count()).group_by(d.kind, d.state))
    return {(str(kind), str(state)): int(n) for kind, state, n in rows}


def count_orders(conn: sa.Connection) -> dict[str, int]:
    """status -> orders; ix_orders_status_expires_at leads with the status, so PostgreSQL counts from it."""
    rows = conn.execute(sa.select(Order.status, sa.func.count()).group_by(Order.status))
    return {str(status): int(n) for status, n in rows}
