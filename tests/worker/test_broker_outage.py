"""A real worker holding a job when its Redis goes away does not die: it waits and reconnects
(Celery 5.7 stopped with "Unrecoverable error: 'NoneType' object has no attribute 'hostname'")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import task_id_of
from models.outbox import OutboxJob
from tests.backends import database_url_of
from tests.tasks.confirm_helpers import confirmed_order
from tests.waiting import wait_until
from ticketq.embedded import EmbeddedRedis, stop_process

ROOT = Path(__file__).resolve().parents[2]


class SilentSmtp:
    """Accepts connections and never greets: the confirmation job hangs in SMTP (15 s timeout)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_smtp() -> Iterator[SilentSmtp]:
    server = SilentSmtp()
    yield server
    server.close()


@pytest.mark.slow(10)
def test_a_worker_holding_a_job_survives_its_redis_going_away(
    own_database: sessionmaker[Session], silent_smtp: SilentSmtp, tmp_path: Path
) -> None:
    db = own_database  # the session's worker (and its relay) never see this test's job
    redis = EmbeddedRedis(tmp_path / "redis").start()
    log = tmp_path / "worker.log"
    env = {**os.environ, "REDIS_URL": redis.url, "SMTP_URL": f"smtp://127.0.0.1:{silent_smtp.port}",
           "DATABASE_URL": database_url_of(db), "OUTBOX_RELAY_SECONDS": "3600"}
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info", "-Q", "documents", "-c", "1",
             "-n", "outage-test@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    producer = Celery(broker=redis.url, set_as_current=False)
    try:
        wait_until(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 60, "worker never started")
        identifier = confirmed_order(db)
        with db() as session:
            job = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == "orders.confirm")).one()
        producer.send_task("orders.confirm", args=[identifier], task_id=task_id_of(job.id), queue="documents")
        wait_until(silent_smtp.accepted.is_set, 60, lambda: f"the job never reached SMTP:\n{log.read_text()[-3000:]}")

        redis.stop()  # the job is in flight, unacknowledged
        wait_until(lambda: "Connection to broker lost" in log.read_text(), 30, "the worker never noticed")
        redis.start()
        wait_until(lambda: log.read_text().count("Connected to redis://") >= 2 or worker.poll() is not None, 60,
                   f"the worker never reconnected:\n{log.read_text()[-3000:]}")
        assert worker.poll() is None, log.read_text()[-3000:]
        assert "Unrecoverable error" not in log.read_text()
    finally:
        producer.close()
        silent_smtp.close()  # the held job fails at once, instead of the worker's stop waiting out its 15 s
        stop_process(worker, 20)
        redis.stop()
