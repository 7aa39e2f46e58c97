"""Real PostgreSQL, Redis, SMTP and Celery for the suite, started when a test first asks for them;
a clean database for every test.

Project modules read their settings from the environment when they are imported (core/settings.py),
and test modules import them when collected, so pytest_configure sets the environment first: every
URL is planned there (tests/backends.py) but nothing starts. The session fixture `backends` starts
the servers and migrates the database the first time a test needs one; a run of pure-logic tests
starts none. Under pytest-xdist each worker process plans and starts its own database, Redis, SMTP
sink and Celery worker; the controller plans nothing.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.backends import Backends, CeleryWorker, fresh_database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ticketq.embedded import SmtpSink

BACKENDS: Backends | None = None
LIVE_WORKER: CeleryWorker | None = None  # the session's worker, once a test has started it
TASK_QUEUES = ("orders", "documents", "mail")


def _xdist_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Plan the backends and point the settings at them, before any project module is imported."""
    global BACKENDS
    if BACKENDS is not None or _xdist_controller(config):
        return
    if "core.settings" in sys.modules:
        raise pytest.UsageError("core.settings was imported before tests/conftest.py set the environment "
                                "for the suite's backends: import project modules inside tests or fixtures")
    worker = str(getattr(config, "workerinput", {}).get("workerid", ""))
    root = Path(tempfile.mkdtemp(prefix=f"ticketq-test-{worker}-" if worker else "ticketq-test-"))
    BACKENDS = Backends.plan(root, label=worker)
    os.environ.update({**BACKENDS.env(), "SECRET_KEY": secrets.token_urlsafe(32), "ENVIRONMENT": "development"})


@pytest.hookimpl(trylast=True)  # after pytest-random-order's shuffle: the others stay shuffled
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first, longest first, each followed by one short test: they mostly wait on
    processes they start, so the short ones fill the cores around them instead of queueing behind
    them at the end of the run. Under pytest-xdist (`--dist load --maxschedchunk=1`, the Makefile) a
    worker is always handed its next test while the current one runs: the short one after each slow
    one is what waits behind it, not another slow one."""
    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return float(marker.args[0]) if marker is not None else 0.0

    slow = sorted((item for item in items if seconds(item)), key=seconds, reverse=True)
    short = [item for item in items if not seconds(item)]
    paired = [item for pair in zip(slow, short, strict=False) for item in pair]
    items[:] = paired + slow[len(short):] + short[len(slow):]


def pytest_unconfigure(config: pytest.Config) -> None:
    if BACKENDS is not None:
        BACKENDS.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if BACKENDS is None:
        return []
    return [f"ticketq backends (started when a test first needs them): postgres={BACKENDS.origin['postgres']}; "
            f"redis={BACKENDS.origin['redis']}; smtp=aiosmtpd {BACKENDS.smtp.url if BACKENDS.smtp else '?'}"]


@pytest.fixture(scope="session")
def backends() -> Backends:
    """The run's PostgreSQL (migrated), Redis and SMTP sink, started on first use."""
    assert BACKENDS is not None, "no backends planned (pytest_configure did not run in this process)"
    if not BACKENDS.started:
        BACKENDS.start()
        # An embedded PostgreSQL names its socket only once started; the settings read the URL at use.
        os.environ["DATABASE_URL"] = BACKENDS.database_url
        from core.settings import settings
        from migrations.migrate import upgrade

        settings.database_url = BACKENDS.database_url
        upgrade()
    return BACKENDS


@pytest.fixture
def db(backends: Backends) -> Iterator[sessionmaker[Session]]:
    """A session factory on the run's PostgreSQL database, emptied before the test."""
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError, OperationalError

    from models import Base
    from models.db import get_engine, get_sessionmaker

    engine = get_engine()
    # DELETE, children first: on tables this small it takes about 3 ms where TRUNCATE takes about
    # 100 (new files for 19 tables), and a third of the tests start with it.
    deletes = [sa.delete(table) for table in reversed(Base.metadata.sorted_tables)]
    for attempt in range(5):
        # The session's live worker may still be finishing jobs of the previous test: its row locks
        # can deadlock with ours, or a row it adds can still name a parent we delete. Try again.
        try:
            with engine.begin() as conn:
                # Ids keep counting: a job message left over from an earlier test names a row that
                # is gone (and is dropped), never a row of this test.
                for statement in deletes:
                    conn.execute(statement)
            break
        except (OperationalError, IntegrityError):
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
    """A live `celery -A worker worker` on all three queues with beat's relay, for the whole run;
    paused during every test that does not ask for it (`_live_worker_only_where_asked`)."""
    global LIVE_WORKER
    LIVE_WORKER = CeleryWorker(backends.root / "logs" / "worker.log", beat=True).start()
    yield LIVE_WORKER
    LIVE_WORKER.stop()
    LIVE_WORKER = None


@pytest.fixture(autouse=True)
def _live_worker_only_where_asked(request: pytest.FixtureRequest) -> None:
    """Once a test has started the session's worker it stays up, and would take the jobs (render,
    send, relay) of any later test in this process: one that expects no worker to run them (a PDF
    not rendered yet, the webhooks it sends itself, jobs counted) would then pass or fail by the
    order the tests ran in. So the worker takes jobs only during the tests that ask for it."""
    if LIVE_WORKER is None:
        return
    if "celery_worker" in request.fixturenames:
        if LIVE_WORKER.paused:
            LIVE_WORKER.resume()
    elif not LIVE_WORKER.paused:
        LIVE_WORKER.pause()


@pytest.fixture
def broker(backends: Backends) -> Iterator[Any]:
    """The run's Redis, with the task queues emptied before the test."""
    import redis

    client = redis.Redis.from_url(backends.redis_url)
    client.delete(*TASK_QUEUES)
    yield client
    client.close()


@pytest.fixture
def own_queue(backends: Backends) -> Iterator[str]:
    """A queue name no worker consumes, for a test that counts the messages landing in it (the
    session's worker consumes the task queues whenever an earlier test has started it)."""
    import redis

    name = f"test-{secrets.token_hex(4)}"
    yield name
    with redis.Redis.from_url(backends.redis_url) as client:
        client.delete(name)


@pytest.fixture
def own_database(backends: Backends) -> Iterator[sessionmaker[Session]]:
    """A migrated database of the test's own beside the run's: no worker or relay of the run (the
    session's worker publishes every job of the run's database) sees its rows. Its URL for a
    subprocess: tests.backends.database_url_of(factory)."""
    from migrations.migrate import upgrade
    from models.db import get_engine, get_sessionmaker

    stops: list[Any] = []
    url = fresh_database(backends.database_url, stops)
    try:
        upgrade(url)
        yield get_sessionmaker(url)
    finally:
        get_engine(url).dispose()
        for stop in reversed(stops):
            stop()


@pytest.fixture
def many_connections(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For a test that opens dozens of PostgreSQL connections at once: one such test at a time among
    the run's pytest-xdist workers. The server allows about 100, and each worker's Celery worker,
    API processes and pools hold some: two such tests together ran out of them."""
    import fcntl

    # Every xdist worker's base directory is a child of the run's, so the lock is the run's.
    path = tmp_path_factory.getbasetemp().parent / "ticketq-many-connections.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
