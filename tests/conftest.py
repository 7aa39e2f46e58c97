"""Real PostgreSQL, Redis, SMTP and Celery for the suite; a clean database for every test."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.backends import Backends, CeleryWorker

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ticketq.embedded import SmtpSink

BACKENDS: Backends | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Start or find the backends before any project module reads its settings."""
    global BACKENDS
    if BACKENDS is not None or hasattr(config, "workerinput"):
        return
    BACKENDS = Backends.plan(Path(tempfile.mkdtemp(prefix="ticketq-test-"))).start()
    os.environ.update({**BACKENDS.env(), "SECRET_KEY": secrets.token_urlsafe(32), "ENVIRONMENT": "development"})
    from migrations.migrate import upgrade

    upgrade()


def pytest_unconfigure(config: pytest.Config) -> None:
    if BACKENDS is not None:
        BACKENDS.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if BACKENDS is None:
        return []
    return [f"ticketq backends: postgres={BACKENDS.origin['postgres']}; redis={BACKENDS.origin['redis']}; "
            f"smtp=aiosmtpd {BACKENDS.smtp.url if BACKENDS.smtp else '?'}"]


@pytest.fixture(scope="session")
def backends() -> Backends:
    assert BACKENDS is not None
    return BACKENDS


@pytest.fixture
def db() -> Iterator[sessionmaker[Session]]:
    """A session factory on the run's PostgreSQL database, emptied before the test."""
    from sqlalchemy.exc import OperationalError

    from models import Base
    from models.db import get_engine, get_sessionmaker

    engine = get_engine()
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    for attempt in range(5):
        # The session's live worker may still be finishing jobs of the previous test; its row locks
        # can deadlock with TRUNCATE's table locks, and PostgreSQL then aborts one side: try again.
        try:
            with engine.begin() as conn:
                # Ids keep counting: a job message left over from an earlier test names a row that
                # is gone (and is dropped), never a row of this test.
                conn.exec_driver_sql(f"TRUNCATE {tables} CASCADE")
            break
        except OperationalError:
            if attempt == 4:
                raise
    yield get_sessionmaker()


@pytest.fixture
def session(db: sessionmaker[Session]) -> Iterator[Session]:
    with db() as s:
        yield s


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """The same schema on SQLite (the embedded demo's database), through the migrations."""
    from migrations.migrate import upgrade
    from models.db import get_engine, get_sessionmaker

    url = f"sqlite:///{tmp_path / 'ticketq.db'}"
    upgrade(url)
    yield get_sessionmaker(url)
    get_engine(url).dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request: pytest.FixtureRequest) -> Any:
    """Both supported databases, for rules that must hold on each."""
    return request.getfixturevalue("db" if request.param == "postgresql" else "sqlite_db")


@pytest.fixture
def smtp(backends: Backends) -> Iterator[SmtpSink]:
    assert backends.smtp is not None
    backends.smtp.reset()
    yield backends.smtp
    backends.smtp.reset()


@pytest.fixture(scope="session")
def celery_worker(backends: Backends) -> Iterator[CeleryWorker]:
    """A live `celery -A worker worker` on all three queues with beat's relay, for the whole run."""
    worker = CeleryWorker(backends.root / "logs" / "worker.log", beat=True).start()
    yield worker
    worker.stop()


@pytest.fixture
def broker(backends: Backends) -> Iterator[Any]:
    """The run's Redis, with the task queues emptied before the test."""
    import redis

    client = redis.Redis.from_url(backends.redis_url)
    for queue in ("orders", "documents", "mail"):
        client.delete(queue)
    yield client
    client.close()
