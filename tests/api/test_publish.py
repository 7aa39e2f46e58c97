"""A request's jobs reach the broker right after its commit, and are then marked sent off the request path."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK, RESEND_TASK
from models.outbox import OutboxJob
from tests.api.test_orders import FORM, new_order

PARKED = "test-parked"  # a queue no worker consumes: what is sent there stays in Redis to be read
PRODUCER_QUEUE = "test-producer"  # consumed only by the worker a test starts for it


def test_submitting_an_order_sends_its_confirmation_job_at_once(
    client: TestClient, world: dict[str, Any], db: sessionmaker[Session]
) -> None:
    identifier = new_order(client, world).json()["identifier"]
    assert client.patch(f"/v1/orders/{identifier}", json=FORM, headers=world["headers"]["buyer"]).status_code == 200
    deadline = time.monotonic() + 10
    while True:  # the API's marker thread notes what it sent (a job the relay sent would be 5 s older)
        with db() as session:
            jobs = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == CONFIRM_TASK)).all()
            job = next((j for j in jobs if j.args == [identifier]), None)
        if job is not None and job.published_at is not None:
            break
        assert time.monotonic() < deadline, "the API did not send the order's confirmation job"
        time.sleep(0.05)
    assert job.queue == "documents" and (job.published_at - job.created_at).total_seconds() < 2


def test_a_worker_runs_the_jobs_the_producer_sends(db: sessionmaker[Session], broker: Any, smtp: Any,
                                                   tmp_path: Path) -> None:
    """What the producer puts on the broker is a task message a real worker runs as the job it names."""
    from core.producer import Job, send_jobs
    from models.base import utcnow
    from tests.backends import CeleryWorker
    from tests.tasks.confirm_helpers import BUYER, confirmed_order

    identifier = confirmed_order(db, [("Ada Buyer", BUYER)], completed=False)
    with db() as session, session.begin():
        row = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == CONFIRM_TASK)).one()
        row.published_at = utcnow()  # as the marker would: no relay sends it meanwhile
        job = Job(row.id, row.task, list(row.args), PRODUCER_QUEUE)
    assert job.args == [identifier]
    worker = CeleryWorker(tmp_path / "worker.log", queues=PRODUCER_QUEUE, concurrency=1).start()
    try:
        assert send_jobs([job]) == [job.id]
        deadline = time.monotonic() + 90
        while True:
            with db() as session:
                ran = session.get(OutboxJob, job.id)
            if ran is not None and ran.done_at is not None:
                break
            assert time.monotonic() < deadline, f"no worker ran the job:\n{worker.logfile.read_text()[-3000:]}"
            time.sleep(0.2)
        assert ran.attempts == 1
    finally:
        worker.stop()


def test_jobs_sent_together_land_in_order_in_pipelined_batches(broker: Any, monkeypatch: Any) -> None:
    """Several jobs go in round trips of PIPELINE messages each; every one lands, in order, with its own id,
    on the queue it names."""
    import json

    import core.producer as broker_module
    from core.producer import Job, send_jobs

    monkeypatch.setattr(broker_module, "PIPELINE", 2)  # 5 jobs: three round trips, the last one short
    jobs = [Job(n, RESEND_TASK, [f"ORDER{n}", "org@example.com"], PARKED) for n in range(1, 6)]
    try:
        assert send_jobs(jobs) == [1, 2, 3, 4, 5]
        landed = [json.loads(m) for m in reversed(broker.lrange(PARKED, 0, -1))]
    finally:
        broker.delete(PARKED)
    assert [m["headers"]["id"] for m in landed] == [f"outbox-{n}" for n in range(1, 6)]
    assert [m["headers"]["task"] for m in landed] == [RESEND_TASK] * 5
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in landed] == [job.args for job in jobs]


def test_the_sender_thread_hands_on_what_gathered_while_it_was_busy_in_the_next_batch() -> None:
    """Pure logic of the batching thread: nothing is lost or handled twice, and flush() empties it."""
    import threading

    from api.publish import BatchThread

    batches: list[list[int]] = []
    busy, release = threading.Event(), threading.Event()

    def handle(batch: list[int]) -> None:
        batches.append(batch)
        if len(batches) == 1:
            busy.set()
            release.wait(10)

    thread: BatchThread[int] = BatchThread("test-sender", handle)
    thread.add([1])
    assert busy.wait(10), "the thread did not pick up the first item"
    thread.add([2, 3])  # arrives while the first batch is being handled
    thread.add([4])
    release.set()
    thread.flush()  # waits for the batch in hand, then handles what waits
    assert batches == [[1], [2, 3, 4]]
