"""A request's jobs reach the broker right after its commit, and are then marked sent off the request path."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK, RESEND_TASK
from models.outbox import OutboxJob
from tests.api.test_orders import FORM, new_order


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


def test_a_job_is_the_message_celery_send_task_would_put_on_the_broker(broker: Any, own_queue: str) -> None:
    """The producer builds its messages with Celery's own builder but skips send_task's per-message extras;
    what lands in Redis is the same message as `send_task` gives (but the random delivery tag)."""
    import json

    from core.producer import Job, _send_task, producer_app, send_jobs

    app = producer_app()
    job = Job(7, RESEND_TASK, ["ABC123", "org@example.com"], own_queue)  # a queue no worker takes from
    assert send_jobs([job]) == [7]
    with app.producer_or_acquire() as producer:
        _send_task(app, producer, job, "outbox-7")
    ours, celerys = (json.loads(m) for m in reversed(broker.lrange(own_queue, 0, -1)))
    for message in (ours, celerys):
        assert message["properties"].pop("delivery_tag")
    assert ours == celerys
    assert ours["headers"]["id"] == "outbox-7" and ours["headers"]["task"] == RESEND_TASK


def test_jobs_sent_together_land_in_order_in_pipelined_batches(broker: Any, monkeypatch: Any, own_queue: str) -> None:
    """Several jobs go in round trips of PIPELINE messages each; every one lands, in order, with its own id."""
    import json

    import core.producer as broker_module
    from core.producer import Job, send_jobs

    monkeypatch.setattr(broker_module, "PIPELINE", 2)  # 5 jobs: three round trips, the last one short
    jobs = [Job(n, RESEND_TASK, [f"ORDER{n}", "org@example.com"], own_queue) for n in range(1, 6)]
    assert send_jobs(jobs) == [1, 2, 3, 4, 5]
    landed = [json.loads(m) for m in reversed(broker.lrange(own_queue, 0, -1))]
    assert [m["headers"]["id"] for m in landed] == [f"outbox-{n}" for n in range(1, 6)]


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
