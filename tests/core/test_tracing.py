"""Tracing off costs nothing and installs nothing; a job keeps the trace that wrote it and carries it in
every message sent for it. (The whole trace through real processes: tests/e2e/test_tracing.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

OFF = """
import json, sys
from opentelemetry import trace
from api.app import create_app
from core.tracing import current_traceparent, setup_tracing
from worker.celery_app import _fresh_connections

create_app()
_fresh_connections()  # what each prefork child runs first
with trace.get_tracer("probe").start_as_current_span("probe"):
    inside = current_traceparent()
print(json.dumps({
    "provider": type(trace.get_tracer_provider()).__name__,
    # Not the SDK itself: redis-py imports it when it is installed (redis.observability).
    "loaded": sorted(m for m in sys.modules if m.startswith(("opentelemetry.instrumentation.", "opentelemetry.exp"))),
    "setup": setup_tracing("probe") is not None,
    "traceparent": inside,
}))
"""


def test_without_an_endpoint_nothing_is_set_up() -> None:
    """The API and a worker child start as they always did: no tracer provider, exporter or instrumentation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", OFF], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "provider": "ProxyTracerProvider", "loaded": [], "setup": False, "traceparent": None}


@pytest.fixture
def in_a_trace() -> Iterator[None]:
    """A current span context, as a request's span would be (no SDK needed: the API propagates it)."""
    from opentelemetry import trace

    ids = TRACEPARENT.split("-")
    context = trace.SpanContext(int(ids[1], 16), int(ids[2], 16), is_remote=False,
                                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    with trace.use_span(trace.NonRecordingSpan(context)):
        yield


def test_a_job_written_in_a_trace_keeps_its_traceparent(sqlite_db: sessionmaker[Session], in_a_trace: None) -> None:
    from models.outbox import enqueue_job

    with sqlite_db() as session, session.begin():
        assert enqueue_job(session, "orders.confirm", ["x"]).trace_context == TRACEPARENT


def test_a_job_written_outside_a_trace_keeps_none(sqlite_db: sessionmaker[Session]) -> None:
    from models.outbox import enqueue_job

    with sqlite_db() as session, session.begin():
        assert enqueue_job(session, "orders.confirm", ["x"]).trace_context is None


def test_a_job_sent_again_by_the_relay_carries_its_trace_in_the_message(
        db: sessionmaker[Session], own_queue: str, broker: Any, in_a_trace: None) -> None:
    from core.producer import producer_app
    from models.outbox import enqueue_job
    from services.relay import publish_jobs

    with db() as session, session.begin():
        traced = enqueue_job(session, "orders.confirm", ["traced"], queue=own_queue).id
    with db() as session, session.begin():
        untraced = enqueue_job(session, "orders.confirm", ["untraced"], queue=own_queue)
        untraced.trace_context = None  # a job written while tracing was off
    assert publish_jobs(db, producer_app(), [traced, untraced.id]) == 2
    sent = [json.loads(raw)["headers"] for raw in broker.lrange(own_queue, 0, -1)]
    by_args = {headers["argsrepr"]: headers for headers in sent}
    assert by_args["['traced']"]["traceparent"] == TRACEPARENT
    assert "traceparent" not in by_args["['untraced']"]
