"""The supervisor behind `ticketq up` / `demo` (and ticketq.processes, which bench, chaos and the tests'
worker share) leaves no process behind, whatever its children do."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.waiting import wait_until
from ticketq.devserver import Supervisor
from ticketq.processes import Backoff, ChildFailed, Process

ENV = dict(os.environ)


def sessions_alive(sup: Supervisor) -> list[str]:
    out: list[str] = []
    for child in sup.children:
        out += subprocess.run(["pgrep", "-s", str(child.pid)], capture_output=True, text=True).stdout.split()
    return out


@pytest.mark.slow(5)
def test_stop_kills_grandchildren_and_children_that_ignore_sigterm(tmp_path: Path) -> None:
    with Supervisor(tmp_path, stop_timeout=1) as sup:
        sup.spawn("plain", ["sleep", "60"], ENV)
        sup.spawn("parent", ["sh", "-c", "sleep 60 & sleep 60 & wait"], ENV)
        sup.spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"], ENV)
        deadline = time.monotonic() + 20  # six processes: every shell is past its trap and has its sleeps
        while len(sessions_alive(sup)) < 6:
            assert time.monotonic() < deadline, f"children never all started: {sessions_alive(sup)}"
            time.sleep(0.05)
        assert {p.stem for p in (tmp_path / "run").glob("*.pid")} == {"plain", "parent", "stubborn"}
        began = time.monotonic()
    assert time.monotonic() - began < 10
    assert sessions_alive(sup) == [] and sup.leftovers() == []
    assert not list((tmp_path / "run").glob("*.pid"))


def test_a_child_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup:
        sup.spawn("flaky", ["sh", "-c", "echo cannot bind port; exit 3"], ENV)
        with pytest.raises(ChildFailed, match=r"flaky exited with status 3[\s\S]*cannot bind port"):
            sup.wait_until(lambda: False, "flaky", timeout=10)


def test_an_exception_inside_the_block_still_stops_everything(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), Supervisor(tmp_path) as sup:
        sup.spawn("sleeper", ["sleep", "60"], ENV)
        raise RuntimeError("boom")
    assert sup.leftovers() == []


def wait_checking(sup: Supervisor, ready: Callable[[], object], timeout: float = 20) -> None:
    """Call check() (which restarts what died) until `ready()`, as `ticketq up`'s loop does."""
    def checked() -> object:
        sup.check()
        return ready()

    wait_until(checked, timeout, "ready", interval=0.05)


@pytest.mark.slow(4)
def test_a_worker_that_dies_is_restarted_with_backoff_and_its_log_says_so(tmp_path: Path) -> None:
    with Supervisor(tmp_path, stop_timeout=1) as sup:
        child = sup.spawn("worker", ["sh", "-c", "echo serving; sleep 60 & wait"], ENV, restart=Backoff())
        first = child.pid
        wait_checking(sup, lambda: b"serving" in (tmp_path / "log" / "worker.log").read_bytes())
        os.killpg(first, signal.SIGKILL)
        wait_checking(sup, lambda: child.restarts == 1)
        assert child.pid != first and child.poll() is None
        assert (tmp_path / "run" / "worker.pid").read_text().strip() == str(child.pid)
        text = (tmp_path / "log" / "worker.log").read_text()
        assert f"worker (pid {first}) exited with status -9; restarting in 1s" in text
        assert f"worker restarted (pid {child.pid}, restart 1)" in text
        assert text.count("serving") >= 1  # the restart appends to the log, keeping the crash
        wait_checking(sup, lambda: (tmp_path / "log" / "worker.log").read_text().count("serving") == 2)
        # a second death soon after waits twice as long
        os.killpg(child.pid, signal.SIGKILL)
        wait_checking(sup, lambda: child.restarts == 2)
        assert "restarting in 2s" in (tmp_path / "log" / "worker.log").read_text()
    assert sup.leftovers() == []


def test_a_child_that_keeps_dying_at_start_fails_the_stack(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup:
        child = sup.spawn("beat", ["sh", "-c", "echo cannot reach redis; exit 1"], ENV, restart=Backoff(first=0.01))
        with pytest.raises(ChildFailed, match=r"beat exited with status 1 6 times in a row[\s\S]*cannot reach redis"):
            wait_checking(sup, lambda: False, timeout=30)
        assert child.restarts == 5  # the sixth quick exit fails the stack instead of a restart
    assert sup.leftovers() == []


def test_a_process_is_ready_by_its_own_run_s_output_or_says_why_it_is_not(tmp_path: Path) -> None:
    """What bench, chaos and the tests' worker wait on: a line of this run (an earlier run's does not
    count), or a port; an exit before that is reported with the end of its log."""
    log = tmp_path / "server.log"
    log.write_text("listening\n")  # an earlier run's
    server = Process("server", ["sh", "-c", "sleep 0.3; echo listening; sleep 60"], ENV, log)
    try:
        began = time.monotonic()
        server.start().wait_ready(line=b"listening", timeout=10)
        assert time.monotonic() - began >= 0.3
    finally:
        server.stop(1)
    assert server.leftovers() == [] and server.poll() is not None
    broken = Process("broken", ["sh", "-c", "echo no config; exit 2"], ENV, tmp_path / "broken.log").start()
    with pytest.raises(ChildFailed, match=r"broken exited with status 2[\s\S]*no config"):
        broken.wait_ready(line=b"listening", timeout=10)
