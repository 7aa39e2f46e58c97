"""Two real `celery -A worker beat` processes on the run's Redis: one schedules, the other stands by,
and takes the lock (and the expiry sweep) soon after the active one is SIGKILLed: within the lock's
life and a tick. The beats here hold a 6 s lock (BEAT_LOCK_SECONDS); the default's bound, 30 s in the
contract, is checked on the configuration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models import Order
from models.base import utcnow
from tests.backends import Backends, CeleryWorker
from tests.factories import make_event, make_order, make_user
from tests.waiting import wait_until
from tests.worker.beats import Beat

LOCK_KEY = "ticketq:beat::lock"
CONTRACT_TAKEOVER = 30.0
LOCK_SECONDS = 6.0  # the beats' BEAT_LOCK_SECONDS here; a standby takes over within it and a 1.5 s tick
TAKEOVER_LIMIT = 15.0  # that, with room for a loaded host to start the sweep
ACQUIRED = "beat: Acquired lock"


@pytest.fixture
def beats(backends: Backends, tmp_path: Path) -> Iterator[list[Beat]]:
    client = redis.Redis.from_url(backends.redis_url)
    for key in client.scan_iter("ticketq:beat:*"):  # a lock left by an earlier test's killed beat
        client.delete(key)
    started: list[Beat] = []
    yield started
    for beat in started:
        beat.stop()
    client.delete(LOCK_KEY)  # a beat killed mid-test must not make the next test's beat stand by
    client.close()


def lock_owner(backends: Backends) -> bytes | None:
    client = redis.Redis.from_url(backends.redis_url)
    try:
        value = client.get(LOCK_KEY)
        return value if isinstance(value, bytes) else None
    finally:
        client.close()


def test_by_default_a_standby_takes_over_within_the_contracts_30_s() -> None:
    import celeryconfig

    assert celeryconfig.redbeat_lock_timeout + celeryconfig.beat_max_loop_interval <= CONTRACT_TAKEOVER


@pytest.mark.slow(12)
def test_a_standby_beat_takes_over_soon_after_the_active_one_dies(
    db: sessionmaker[Session], celery_worker: CeleryWorker, backends: Backends, tmp_path: Path, beats: list[Beat]
) -> None:
    active = Beat("beat-a", tmp_path / "beat-a.log", BEAT_LOCK_SECONDS=str(LOCK_SECONDS))
    beats.append(active)
    active.wait_for(ACQUIRED, 60)
    active.wait_for("Sending due task expire-stale-orders", 30)
    owner = lock_owner(backends)
    assert owner is not None

    standby = Beat("beat-b", tmp_path / "beat-b.log", BEAT_LOCK_SECONDS=str(LOCK_SECONDS))
    beats.append(standby)
    standby.wait_for("beat: Starting", 60)
    # The active beat keeps scheduling while the standby waits: its sends go on, the standby sends nothing.
    sends = active.text().count("Sending due task")
    wait_until(lambda: active.text().count("Sending due task") >= sends + 3, 30, "the active beat stopped sending")
    assert ACQUIRED not in standby.text() and "Sending due task" not in standby.text()
    assert lock_owner(backends) == owner

    active.kill()
    killed_at = time.monotonic()
    with db() as session, session.begin():  # due now, and only a beat that schedules will sweep it
        order = make_order(session, make_event(session), make_user(session))
        session.execute(sa.update(Order).where(Order.id == order.id).values(expires_at=utcnow() - timedelta(seconds=1)))

    def expired() -> bool:
        with db() as session:
            return session.get_one(Order, order.id).expired_at is not None

    wait_until(expired, TAKEOVER_LIMIT + 15, f"no expiry after the active beat died:\n{standby.text()[-3000:]}")
    took = time.monotonic() - killed_at
    assert ACQUIRED in standby.text()
    new_owner = lock_owner(backends)
    assert new_owner is not None and new_owner != owner
    assert took < TAKEOVER_LIMIT, f"the standby took {took:.1f} s to take over and sweep"
