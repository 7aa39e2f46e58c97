"""Start, watch, restart and stop the processes of `ticketq up`, the demo, bench, chaos and the tests.

Each child runs in a session of its own: its process group is ours to signal, and a Ctrl-C at the
terminal reaches only us (we then stop it in order). Stopping is systemd's KillMode=mixed: SIGTERM to
the child, which winds down its own children, then SIGKILL to whatever is left in its session.
Not a library: honcho restarts nothing, circus needs ZeroMQ and its own loop, supervisord is a daemon.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1

log = logging.getLogger("ticketq.supervisor")


class ChildFailed(RuntimeError):
    """A process we started exited, or never became ready."""


class NotReady(ChildFailed, TimeoutError):
    """What we waited for did not happen in time."""


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(ready: Callable[[], bool], timeout: float, message: str, interval: float = 0.05) -> None:
    """Poll `ready` until it is true; NotReady(message) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise NotReady(message)
        time.sleep(interval)


@dataclass(frozen=True)
class Backoff:
    """When a child that exited starts again: `first`, twice that, four times … at most `most` seconds
    later; the wait starts over once a run lasted `stable` seconds. `give_up` exits in a row, each within
    `stable` of its start, mean it cannot start at all (None: it is always started again)."""

    first: float = 1.0
    most: float = 30.0
    stable: float = 60.0
    give_up: int | None = 6

    def delay(self, quick_deaths: int) -> float:
        return min(self.most, self.first * 2.0 ** (quick_deaths - 1))


@dataclass(eq=False)
class Process:
    """One command: started in its own session with its output appended to `log` (None: our terminal)."""

    name: str
    argv: list[str]
    env: Mapping[str, str] | None = None  # None: ours
    log: Path | None = None
    cwd: Path | None = None
    pidfile: Path | None = None
    restart: Backoff | None = None  # None: an exit is a failure (`tend` raises ChildFailed)
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    sessions: list[int] = field(default_factory=list, init=False)  # every run's, swept on stop
    exits: list[tuple[float, int]] = field(default_factory=list, init=False)  # (time.time(), status) of each
    restarts: int = field(default=0, init=False)
    stopped: bool = field(default=False, init=False)
    _started: float = field(default=0.0, init=False)
    _offset: int = field(default=0, init=False)  # where this run's output begins in the log
    _quick_deaths: int = field(default=0, init=False)
    _restart_at: float | None = field(default=None, init=False)

    def start(self) -> Process:
        """Start the command (again: a restart appends to the log, keeping what the last run said)."""
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") if self.log is not None else nullcontext() as handle:
            self.popen = subprocess.Popen(
                self.argv, env=None if self.env is None else dict(self.env), cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=handle, stderr=subprocess.STDOUT if handle else None, start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        self.sessions.append(self.popen.pid)
        self.stopped, self._started, self._restart_at = False, time.monotonic(), None
        if self.pidfile is not None:  # whole or not at all: a reader must never see it empty
            partial = self.pidfile.with_name(f".{self.pidfile.name}.partial")
            partial.write_text(f"{self.pid}\n")
            partial.replace(self.pidfile)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def poll(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def said(self, line: bytes) -> bool:
        """Whether this run (not an earlier one) wrote `line` to its log."""
        if self.log is None or not self.log.exists():
            return False
        with self.log.open("rb") as handle:
            handle.seek(self._offset)
            return line in handle.read()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, *, line: bytes | None = None, port: int | None = None, timeout: float = 60) -> Process:
        """Until `line` shows in this run's log and `port` answers; ChildFailed with its log if it exits first."""
        def ready() -> bool:
            if (code := self.poll()) is not None:
                raise ChildFailed(self._exited(code))
            return (line is None or self.said(line)) and (port is None or port_answers("127.0.0.1", port))

        wait_for(ready, timeout, f"{self.name} not ready after {timeout:.0f}s{self._where()}")
        return self

    def children(self) -> list[int]:
        return _pgrep("-P", self.pid)

    def leftovers(self) -> list[int]:
        """Pids still alive in any session it ran in (none once stopped)."""
        if shutil.which("pgrep") is None:  # no procps: ask the kernel about each group instead
            return [session for session in self.sessions if group_alive(session)]
        return [pid for session in self.sessions for pid in _pgrep("-s", session)]

    def tend(self) -> None:
        """If it exited: with a Backoff, start it again once the wait has passed; else ChildFailed."""
        code = self.poll()
        if code is None or self.stopped:
            return
        if self.restart is None:
            raise ChildFailed(self._exited(code))
        now = time.monotonic()
        if self._restart_at is None:
            self.exits.append((time.time(), code))
            self._quick_deaths = self._quick_deaths + 1 if now - self._started < self.restart.stable else 1
            if self.restart.give_up is not None and self._quick_deaths >= self.restart.give_up:
                raise ChildFailed(self._exited(code, f" {self._quick_deaths} times in a row, each within "
                                                    f"{self.restart.stable:.0f}s of starting"))
            delay = self.restart.delay(self._quick_deaths)
            self._restart_at = now + delay
            self._note(f"{self.name} (pid {self.pid}) exited with status {code}; restarting in {delay:.0f}s")
        elif now >= self._restart_at:
            with suppress(ProcessLookupError, PermissionError):  # what the dead run forked goes with it
                os.killpg(self.pid, signal.SIGKILL)
            self.restarts += 1
            self.start()
            self._note(f"{self.name} restarted (pid {self.pid}, restart {self.restarts})")

    def stop(self, timeout: float = 15) -> None:
        stop_all([self], timeout)

    def _where(self) -> str:
        return f"; see {self.log}" if self.log else ""

    def _exited(self, code: int, times: str = "") -> str:
        return f"{self.name} exited with status {code}{times}{self._where()}\n{self.tail()}"

    def _note(self, message: str) -> None:
        """Say it on our stderr and in the child's own log, next to its crash."""
        log.warning("ticketq supervisor: %s", message)
        if self.log is not None:
            with self.log.open("a") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ticketq supervisor: {message}\n")


def stop_all(procs: Iterable[Process], timeout: float = 15) -> None:
    """SIGTERM every one, wait up to `timeout` in all, then SIGKILL what is left in any session they
    ever had (their forks, children that ignore SIGTERM, an earlier run's orphans); remove pid files."""
    procs = list(procs)
    for proc in procs:
        proc.stopped = True
        if proc.popen is not None and proc.popen.poll() is None:
            with suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        if proc.popen is not None:
            with suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        for session in proc.sessions:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(session, signal.SIGKILL)
        if proc.popen is not None:
            with suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)
        settle = time.monotonic() + 5  # killed orphans linger until init reaps them
        while any(group_alive(s) for s in proc.sessions) and time.monotonic() < settle:
            time.sleep(0.02)
        if proc.pidfile is not None:
            proc.pidfile.unlink(missing_ok=True)


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL: for a child started without `Process`."""
    if process is not None and process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        process.kill()
        process.wait()


def group_alive(pgid: int) -> bool:
    """Whether any process of the group (= session) led by `pgid` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as someone else's
        pass
    return True


def _pgrep(flag: str, pid: int) -> list[int]:
    out = subprocess.run(["pgrep", flag, str(pid)], capture_output=True, text=True, check=False)
    return [int(found) for found in out.stdout.split()]


def _die_with_parent() -> Callable[[], object] | None:
    """A preexec_fn asking Linux to SIGTERM the child when we die, even by SIGKILL; none while we run
    threads, beside which a preexec_fn is unsafe."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
