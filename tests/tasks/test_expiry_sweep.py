"""orders.expire_stale through the real queue: a live worker, and a live beat on a short sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models import Order
from models.base import utcnow
from models.status import OrderStatus
from tests.backends import Backends, CeleryWorker
from tests.factories import make_event, make_order, make_user
from tests.waiting import wait_until
from worker import app

S = OrderStatus


def test_the_worker_expires_due_orders_by_task_name(db: sessionmaker[Session], celery_worker: CeleryWorker) -> None:
    with db() as session, session.begin():
        event, buyer = make_event(session), make_user(session)
        due = make_order(session, event, buyer, now=utcnow() - timedelta(hours=1))
        fresh = make_order(session, event, buyer)
    result = app.send_task("orders.expire_stale", queue="orders")
    assert result.get(timeout=30) == {"initializing": 1, "pending": 0}
    with db() as session:
        assert session.get_one(Order, due.id).status is S.EXPIRED
        assert session.get_one(Order, fresh.id).status is S.INITIALIZING


def test_beat_expires_an_order_soon_after_its_deadline(
    db: sessionmaker[Session], celery_worker: CeleryWorker, backends: Backends, tmp_path: Path
) -> None:
    sweep = 1.0
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session))
    env = {**os.environ, "EXPIRY_SWEEP_SECONDS": str(sweep)}
    log = tmp_path / "beat.log"
    with log.open("wb") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "beat", "-l", "info", "-s", str(tmp_path / "schedule")],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        # The deadline is set once this beat schedules (it may first wait for another's lock to lapse).
        wait_until(lambda: b"beat: this beat now schedules" in log.read_bytes() or beat.poll() is not None, 60,
                   lambda: f"the beat to schedule:\n{log.read_text()[-2000:]}")
        assert beat.poll() is None, log.read_text()[-2000:]
        deadline = utcnow() + timedelta(seconds=2)
        with db() as session, session.begin():
            session.execute(sa.update(Order).where(Order.id == order.id).values(expires_at=deadline))

        def expired_at() -> datetime | None:
            with db() as session:
                return session.get_one(Order, order.id).expired_at

        moment = wait_until(expired_at, 20, "beat to expire the order", interval=0.2)
    finally:
        beat.terminate()
        beat.wait(10)
    assert deadline <= moment <= deadline + timedelta(seconds=sweep + 2)
