"""The suite's own backends (tests/backends.py): it never empties a Redis nobody gave it.

A stand-in for a developer's Redis on "6379" (an embedded server the test starts, with data in
every database) must keep every key through a plan, a start and a stop of the suite's backends,
unless TEST_REDIS_SHARED=1 opts in, and even then only an empty database is taken.
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


def test_without_the_opt_in_a_redis_already_there_is_left_alone(
    developers_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    before = keys_by_db(developers_redis)
    plan = Backends.plan(tmp_path / "run")
    assert f":{developers_redis.port}/" not in plan.redis_url
    assert "left alone" in plan.origin["redis"]
    plan.start()
    try:
        with redis.Redis.from_url(plan.redis_url) as ours:
            ours.set("suite", "x")
            ours.flushdb()  # whatever a test does to the suite's Redis stays there
    finally:
        plan.stop()
    assert keys_by_db(developers_redis) == before


def test_the_opt_in_takes_only_an_empty_database_and_leaves_the_others(
    developers_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REDIS_SHARED", "1")
    before = keys_by_db(developers_redis)
    plan = Backends.plan(tmp_path / "run")
    assert plan.redis_url == f"redis://127.0.0.1:{developers_redis.port}/15"  # 1-14 hold data
    with redis.Redis.from_url(plan.redis_url) as ours:
        ours.set("suite", "x")
    plan.stop()  # never started: the claim alone is given back
    after = keys_by_db(developers_redis)
    assert after == before


def test_the_opt_in_without_a_server_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ticketq.embedded import free_port

    monkeypatch.setattr(backends_module, "SHARED_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("TEST_REDIS_SHARED", "1")
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    monkeypatch.delenv("TEST_EMBEDDED", raising=False)
    with pytest.raises(RuntimeError, match="TEST_REDIS_SHARED=1, but no Redis answers"):
        Backends.plan(tmp_path / "run")
