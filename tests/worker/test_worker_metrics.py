"""A real prefork worker with WORKER_METRICS_PORT: its pool children's metrics, summed through
prometheus_client's multiprocess mode, scraped over HTTP while it confirms, sweeps and relays. It
logs with LOG_FORMAT=json: one JSON object per line, naming the order, task and job."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK, EXPIRE_TASK, RELAY_TASK
from models.base import utcnow
from models.deliveries import DeliveryState
from models.outbox import OutboxJob
from tests.backends import Backends, CeleryWorker, fresh_database
from tests.factories import make_event, make_order, make_user
from tests.tasks.confirm_helpers import confirmed_order, wait_settled
from tests.waiting import wait_until
from ticketq.embedded import SmtpSink, free_port
from worker import app

QUEUE = "metrics-test"  # this worker's alone: the session's shared worker never takes its jobs
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_worker(backends: Backends, tmp_path: Path) -> Iterator[tuple[CeleryWorker, str, sessionmaker[Session]]]:
    """The worker, its metrics URL, and its own database: the session's shared worker and its relay
    never see these jobs, so every figure is this worker's."""
    from migrations.migrate import upgrade
    from models.db import get_engine, get_sessionmaker

    stops: list[Any] = []
    database = fresh_database(backends.database_url, stops)
    upgrade(database)
    port = free_port()
    worker = CeleryWorker(tmp_path / "worker.log", concurrency=2, queues=QUEUE,
                          env={"WORKER_METRICS_PORT": str(port), "LOG_FORMAT": "json", "DATABASE_URL": database})
    url = f"http://127.0.0.1:{port}/metrics"

    def serving() -> bool:
        try:
            return bool(scrape(url) is not None)
        except (urllib.error.URLError, OSError):
            return False

    try:
        worker.start()
        wait_until(serving, 30, "the worker's metrics endpoint")
        yield worker, url, get_sessionmaker(database)
    finally:
        worker.stop()
        get_engine(database).dispose()
        for stop in stops:
            stop()


@pytest.mark.slow(11)
def test_a_prefork_worker_serves_its_childrens_metrics(
        metrics_worker: tuple[CeleryWorker, str, sessionmaker[Session]], smtp: SmtpSink) -> None:
    worker, url, db = metrics_worker
    before = scrape(url)

    def grew(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    # A confirmation: rendered, sent over SMTP, its lag observed once its last email was accepted.
    identifier = confirmed_order(db)
    app.send_task(CONFIRM_TASK, args=[identifier], queue=QUEUE)
    rows = wait_settled(db, identifier, 2)
    sent = sum(r.state is DeliveryState.SENT for r in rows)
    assert sent == len(rows)
    server = smtp.url.removeprefix("smtp://").split("/")[0]

    def confirmed() -> Samples | None:
        now = scrape(url)
        return now if grew(now, "ticketq_confirmation_lag_seconds_count") == 1 else None

    after = wait_until(confirmed, 30, "the confirmation lag")
    assert 0 < grew(after, "ticketq_confirmation_lag_seconds_sum") < 60
    assert grew(after, "ticketq_smtp_sends_total", outcome="sent", server=server) == sent
    for kind in ("layout", "tickets", "invoice", "attendee-ticket"):
        assert grew(after, "ticketq_render_seconds_count", kind=kind) >= 1, kind

    # An expiry sweep: its duration, the orders it expired, and when it last finished.
    started = time.time()
    with db() as session, session.begin():
        make_order(session, make_event(session), make_user(session, "late@example.org"),
                   now=utcnow() - timedelta(hours=1))
    assert app.send_task(EXPIRE_TASK, queue=QUEUE).get(timeout=30) == {"initializing": 1, "pending": 0}
    swept = wait_until(lambda: (s := scrape(url)) and grew(s, "ticketq_expiry_sweep_duration_seconds_count") == 1
                     and s, 30, "the sweep's metrics")
    assert grew(swept, "ticketq_orders_expired_total", status="initializing") == 1
    assert value(swept, "ticketq_expiry_sweep_last_success_timestamp_seconds") >= started

    # The relay takes back a job whose holder's lease ran out, and says why.
    now = utcnow()
    with db() as session, session.begin():
        session.add(OutboxJob(task=EXPIRE_TASK, args=[], queue=QUEUE, published_at=now - timedelta(minutes=5),
                              started_at=now - timedelta(minutes=4), claimed_by="gone:1",
                              lease_until=now - timedelta(seconds=1)))
    app.send_task(RELAY_TASK, queue=QUEUE)
    wait_until(lambda: grew(scrape(url), "ticketq_relay_resent_jobs_total", cause="lease_expired") >= 1, 30,
             "the relay's re-send")

    # The children did the work: every figure above came through the multiprocess files.
    assert worker.child_pids()
    lines = [json.loads(line) for line in worker.logfile.read_text().splitlines() if line.startswith("{")]
    serving = [line for line in lines if line["message"].startswith("worker metrics on port")]
    assert len(serving) == 1
    directory = Path(serving[0]["message"].rsplit("(", 1)[1].rstrip(")"))
    assert directory.is_dir()
    ours = [line for line in lines if line["order"] == identifier]
    assert ours and all(line["task_id"] and line["level"] for line in ours)
    assert {"time", "level", "logger", "message", "order", "task_id", "job"} <= set(ours[0])
    worker.stop()
    assert not directory.exists(), "the private directory is removed at shutdown"
