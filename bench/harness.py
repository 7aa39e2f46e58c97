"""One run's world: its own Redis, a fresh PostgreSQL database, an SMTP sink, and the Celery and
uvicorn processes it starts, all stopped and removed on close (bench and chaos share it).

Project modules read their settings from the environment when first imported, so a script builds
its `Harness` (which exports the URLs) before importing anything from models/, tasks/ or worker/.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.servers import ROOT, CountingSink
from tests.embedded_postgres import EmbeddedPostgres
from ticketq.embedded import EmbeddedRedis, free_port
from ticketq.processes import Process, port_answers, stop_all

LOCAL_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@dataclass
class Harness:
    """Everything one bench or chaos run needs, created on start and removed on close."""

    name: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ticketq-bench-")))
    redis: EmbeddedRedis | None = None
    sink: CountingSink | None = None
    database_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Process] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)  # what a later scenario builds on (P4: P1's rate)
    quick: bool = False  # a smoke run (--quick): its numbers mean nothing, so `settle` waits for no quiet cores
    _db_name: str = ""
    _server: str = ""
    _embedded: EmbeddedPostgres | None = None

    def start(self) -> Harness:
        if "core.settings" in sys.modules:
            raise RuntimeError("project settings were imported before the harness exported its URLs; "
                               "import models/tasks/worker inside the scenario functions")
        try:
            self.redis = EmbeddedRedis(self.root / "redis", persistent=True).start()
            self.sink = CountingSink().start()
            self.database_url = self._create_database()
        except BaseException:
            self.close()
            raise
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url, "SMTP_URL": self.sink.url,
            "FILES_DIR": str(self.root / "files"), "VAR_DIR": str(self.root / "var"),
            "SECRET_KEY": secrets.token_urlsafe(32), "ENVIRONMENT": "development", "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(self.env)  # for this process's own imports of the project (see module doc)
        from migrations.migrate import upgrade

        upgrade(self.database_url)
        return self

    def _create_database(self) -> str:
        """A new database on BENCH_POSTGRES_URL's server, else the local one on 5432, else an embedded one
        (BENCH_EMBEDDED=1 forces that, as TEST_EMBEDDED does for the tests)."""
        embedded = os.environ.get("BENCH_EMBEDDED") == "1"
        self._server = "" if embedded else os.environ.get("BENCH_POSTGRES_URL", "")
        if not self._server and not embedded and port_answers("127.0.0.1", 5432):
            self._server = LOCAL_SERVER
        if not self._server:
            self._embedded = EmbeddedPostgres(self.root / "postgres").start()
            self._server = self._embedded.url("postgres")
        self._db_name = f"ticketq_bench_{self.name}_{os.getpid()}_{secrets.token_hex(3)}"
        with admin_engine(self._server).connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self._db_name}"')
        url = make_url(self._server).set(database=self._db_name)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg2")
        return url.render_as_string(hide_password=False)

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        stop_all(reversed(self.procs), 20)
        self.procs.clear()
        if self.sink is not None:
            with contextlib.suppress(Exception):  # already down (a chaos script stopped it)
                self.sink.stop()
        if self.redis is not None:
            self.redis.stop()
        try:
            if self._db_name:
                _dispose_project_engines()
                with admin_engine(self._server).connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')
                self._db_name = ""
            if self._embedded is not None:
                self._embedded.stop()
        finally:
            if os.environ.get("BENCH_KEEP_LOGS") == "1":  # a run to debug: its processes' logs stay
                print(f"logs kept under {self.root}", file=sys.stderr)
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    # --- processes -------------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], ready: bytes | None, extra_env: dict[str, str] | None = None,
              timeout: float = 60) -> Process:
        proc = Process(name, args, {**self.env, **(extra_env or {})}, self.root / "logs" / f"{name}.log", ROOT)
        self.procs.append(proc)  # before it starts: close() stops it even if it never became ready
        return proc.start().wait_ready(line=ready, timeout=timeout)

    def worker(self, name: str = "worker", concurrency: int = 2, queues: str = "orders,documents,mail",
               extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> Process:
        args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info", "-Q", queues,
                "-c", str(concurrency), "-n", f"{name}-{secrets.token_hex(3)}@%h", "--without-gossip",
                "--without-mingle", "--without-heartbeat", *extra_args]
        return self.spawn(name, args, b" ready.", {"LOG_LEVEL": "INFO", **(extra_env or {})})

    def beat(self, name: str = "beat", extra_env: dict[str, str] | None = None,
             scheduler: str | None = None) -> Process:
        args = [sys.executable, "-m", "celery", "-A", "worker", "beat", "-l", "info",
                "-s", str(self.root / f"{name}-schedule"), *(["--scheduler", scheduler] if scheduler else [])]
        return self.spawn(name, args, b"beat: Starting", {"LOG_LEVEL": "INFO", **(extra_env or {})})

    def api(self, name: str = "api", port: int | None = None, extra_env: dict[str, str] | None = None,
            workers: int = 1) -> tuple[Process, str]:
        port = port or free_port()
        args = [sys.executable, "-m", "ticketq.cli", "api", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers)]
        proc = self.spawn(name, args, None, {"LOG_LEVEL": "WARNING", **(extra_env or {})})
        proc.wait_ready(port=port, timeout=60)
        return proc, f"http://127.0.0.1:{port}"

    def stop(self, proc: Process) -> None:
        proc.stop(20)
        if proc in self.procs:
            self.procs.remove(proc)

    # --- state between scenarios -----------------------------------------------------------
    def reset(self) -> None:
        """Stop what an earlier scenario left running, empty every table, the broker and the sink, so
        scenarios sharing a harness start equal (a beat left alive would keep redbeat's lock)."""
        import redis

        from models import Base
        from models.db import get_engine

        for proc in list(reversed(self.procs)):
            self.stop(proc)

        with get_engine(self.database_url).begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        assert self.redis is not None and self.sink is not None
        client = redis.Redis.from_url(self.redis.url)
        client.flushdb()
        client.close()
        self.sink.clear()
        self.settle()

    def settle(self, quiet: float = 0.15, timeout: float = 20.0) -> None:
        """Let what the last scenario left behind finish before the next one is measured.

        A scenario that wrote thousands of rows and files leaves PostgreSQL's checkpointer, autovacuum
        and the kernel's writeback working after it, on the cores the next scenario measures. So: the
        dirty pages written now (CHECKPOINT), the files synced, then up to `timeout` s for the cores
        to go quiet (busy below `quiet` of all cores over half a second).
        """
        from bench.monitor import machine_busy_seconds

        began = time.monotonic()
        with contextlib.suppress(sa.exc.DBAPIError), admin_engine(self.database_url).connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")  # needs superuser or pg_checkpoint; without, the wait below
        os.sync()
        if self.quick:  # beside a test suite the cores are never quiet: the wait would always run out
            return
        while time.monotonic() - began < timeout:
            before = machine_busy_seconds()
            time.sleep(0.5)
            if (machine_busy_seconds() - before) / 0.5 < quiet * cpu_count():
                break


def admin_engine(server: str) -> sa.Engine:
    url = make_url(server)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _dispose_project_engines() -> None:
    if "models.db" in sys.modules:
        sys.modules["models.db"].reset_engines()


def cpu_count() -> int:
    return os.cpu_count() or 1


def hostname() -> str:
    return socket.gethostname()
