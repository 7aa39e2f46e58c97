"""Real `ticketq api` processes: two of them share the resend limits through Redis, and an order
submitted while Redis is down still commits; its confirmation goes out once Redis is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.backends import Backends, CeleryWorker, database_url_of, reset_windows
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class ApiProcess:
    """`ticketq api` on a free port, with its own environment overrides."""

    def __init__(self, logfile: Path, **env: str) -> None:
        from ticketq.embedded import free_port

        self.port = free_port()
        self.logfile = logfile
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ApiProcess:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.logfile.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "ticketq.cli", "api", "--port", str(self.port)],
                                        env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=2)
                return self
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"API did not start:\n{self.logfile.read_text()[-3000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        from ticketq.embedded import stop_process

        stop_process(self.process, 15)
        if self.process:
            self._log.close()


@pytest.fixture
def api_process(tmp_path: Path, db: sessionmaker[Session]) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(**env: str) -> ApiProcess:
        process = ApiProcess(tmp_path / f"api-{len(started)}.log", **env)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.mark.slow(8)
def test_two_api_processes_share_the_per_user_and_per_ip_limits(
        api_process: Callable[..., ApiProcess], limits_reset: None, backends: Backends, world: dict[str, Any],
        token_for: Callable[..., dict[str, str]]) -> None:
    """Requests alternate between two processes: one user's window is one, then (windows reset)
    different users from one address (loopback) share the IP's window."""
    limits = {"RESEND_LIMIT_PER_USER": "5/minute", "RESEND_LIMIT_PER_IP": "9/minute"}
    apis = api_process(**limits), api_process(**limits)
    body = {"data": {"order": world["orders"]["completed"]}}

    def resend(i: int, headers: dict[str, str]) -> int:
        return httpx.post(f"{apis[i % 2].url}/v1/orders/resend-email", json=body, headers=headers,
                          timeout=10).status_code

    assert [resend(i, world["headers"]["coorg"]) for i in range(8)] == [202] * 5 + [429] * 3
    assert resend(1, world["headers"]["owner"]) == 202  # another user, within the IP's window

    reset_windows(backends.redis_url)
    admins = [token_for(f"ip-admin{i}@example.org", admin=True) for i in range(11)]
    assert [resend(i, admins[i]) for i in range(11)] == [202] * 9 + [429] * 2


@pytest.mark.slow(28)
def test_an_order_submitted_while_redis_is_down_is_confirmed_once_it_is_back(
        api_process: Callable[..., ApiProcess], own_database: sessionmaker[Session], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, smtp: Any) -> None:
    from core.jobs import CONFIRM_TASK
    from models.deliveries import DeliveryState, EmailDelivery
    from models.outbox import OutboxJob
    from models.users import create_user_token
    from tests.factories import make_event, make_user
    from ticketq.embedded import EmbeddedRedis

    # A database and a Redis of the test's own, for the worker, relay and API subprocesses: the
    # session's worker (and its relay, which publishes every job of the run's database) sees neither.
    db = own_database
    monkeypatch.setenv("DATABASE_URL", database_url_of(db))
    redis_server = EmbeddedRedis(tmp_path / "own-redis").start()
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    worker = CeleryWorker(tmp_path / "worker.log").start()
    try:
        with db() as session, session.begin():
            buyer = {"Authorization": f"Bearer {create_user_token(session, 'buyer@example.org')[1]}"}
        with db() as session, session.begin():
            event_id = make_event(session, owner=make_user(session, "owner@example.org")).id
        api = api_process(REDIS_URL=redis_server.url)
        created = httpx.post(f"{api.url}/v1/orders", headers=buyer, timeout=10, json={
            "event": event_id, "tickets": [{"ticket": _ticket_id(db, event_id), "quantity": 1}]})
        assert created.status_code == 201, created.text
        identifier = created.json()["identifier"]

        redis_server.stop()
        started = time.monotonic()
        submitted = httpx.patch(f"{api.url}/v1/orders/{identifier}", headers=buyer, timeout=30, json={
            "payment_mode": "bank", "buyer": {"name": "Ada", "email": "ada@example.org"},
            "attendees": [{"name": "Ada", "email": "ada@example.org"}]})
        assert submitted.status_code == 200, submitted.text
        assert submitted.json()["status"] == "placed"
        assert time.monotonic() - started < 5  # publishing to a dead broker does not hold the request
        assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 503
        with db() as session:
            job = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == CONFIRM_TASK)).one()
        assert job.args == [identifier] and job.published_at is None

        redis_server.start()  # same port
        _relay_until_published(db, job.id)
        wait_until(lambda: "ada@example.org" in _sent(db, identifier, DeliveryState, EmailDelivery), 120,
                   "the buyer's confirmation sent", interval=0.5)
        assert any(m["X-Order-Identifier"] == identifier for m in smtp.messages)
    finally:
        worker.stop()
        redis_server.stop()


def _ticket_id(db: sessionmaker[Session], event_id: int) -> int:
    from models.events import TicketType

    with db() as session:
        return int(session.scalars(sa.select(TicketType.id).where(TicketType.event_id == event_id)).first() or 0)


def _relay_until_published(db: sessionmaker[Session], job_id: int, timeout: float = 60) -> None:
    """Run the beat's relay (in a subprocess, on our Redis) until it has published the job."""
    from models.outbox import OutboxJob

    def published() -> bool:
        subprocess.run([sys.executable, "-c", "from tasks.outbox_relay import relay_outbox; relay_outbox()"],
                       cwd=ROOT, check=True, timeout=60, capture_output=True)
        with db() as session:
            job = session.get(OutboxJob, job_id)
            return job is not None and job.published_at is not None

    wait_until(published, timeout, "outbox relay published the job", interval=0.5)


def _sent(db: sessionmaker[Session], identifier: str, state: Any, delivery: Any) -> list[str]:
    from models.orders import Order

    with db() as session:
        rows = session.scalars(sa.select(delivery).join(Order).where(Order.identifier == identifier)).all()
        return [r.recipient for r in rows if r.state is state.SENT]

