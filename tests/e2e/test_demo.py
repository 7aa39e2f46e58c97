"""`ticketq demo` and `ticketq up` for real: embedded Redis, SQLite, SMTP sink, API, worker, beat;
everything they start is gone afterwards (checked with pgrep), on success and on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_until
from ticketq.embedded import free_port
from ticketq.stack import healthz_ok

ROOT = Path(__file__).resolve().parents[2]
CHILDREN = {"redis", "worker", "beat", "api"}
KINDS = {"confirmation-buyer", "confirmation-attendee", "organizer-notification", "cancellation", "payment-received"}
IDENTIFIER = re.compile(r"\b[0-9a-f]{32}\b")


def clean_env(var: Path, **extra: str) -> dict[str, str]:
    """The machine a newcomer has: no service URLs set (the suite's own are removed)."""
    drop = {"DATABASE_URL", "REDIS_URL", "SMTP_URL", "FILES_DIR", "SECRET_KEY"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env.update(VAR_DIR=str(var), NO_COLOR="1", **extra)
    return env


def start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    # A suite started as a shell's background job (`make test &`) ignores SIGINT, and a child inherits
    # an ignored signal: the Ctrl-C tests would send one it never sees. The child gets the default.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with out.open("wb") as handle:
            return subprocess.Popen([sys.executable, "-m", "ticketq.cli", *args], cwd=ROOT, env=env,
                                    stdout=handle, stderr=subprocess.STDOUT)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture
def launched() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The `ticketq` commands a test started: any still running at its end (a check failed) gets
    Ctrl-C, as a user would give it, so that no stack outlives its test."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def sessions_of(process: subprocess.Popen[bytes], run_dir: Path, timeout: float = 90) -> dict[str, int]:
    """The session ids (= pids of the leaders) of the children, read from var/run while they run."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while set(seen) != CHILDREN:
        for pidfile in run_dir.glob("*.pid"):
            seen.setdefault(pidfile.stem, int(pidfile.read_text()))
        assert process.poll() is None or set(seen) == CHILDREN, f"exited early with {process.returncode}"
        assert time.monotonic() < deadline, f"children never all started: {seen}"
        time.sleep(0.05)
    return seen


def alive(sessions: dict[str, int]) -> dict[str, list[str]]:
    found = {}
    for name, sid in sessions.items():
        out = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True, check=False).stdout.split()
        if out:
            found[name] = out
    return found


@pytest.mark.slow(32)
@pytest.mark.timeout(240)
def test_demo_drives_every_status_and_leaves_nothing_behind(tmp_path: Path,
                                                            launched: list[subprocess.Popen[bytes]]) -> None:
    var, out = tmp_path / "var", tmp_path / "demo.out"
    began = time.monotonic()
    demo = start(["demo"], clean_env(var), out)
    launched.append(demo)
    sessions = sessions_of(demo, var / "run")
    code = demo.wait(timeout=180)
    elapsed, text = time.monotonic() - began, out.read_text()
    assert code == 0, text
    assert elapsed < 120, f"demo took {elapsed:.0f}s"
    assert "OK: every order reached its status" in text
    for status in ("placed", "completed", "expired", "cancelled"):
        assert re.search(rf"^  {status}\s", text, re.M), status
    assert "then 429" in text and "Retry-After" in text
    assert alive(sessions) == {}, "processes left behind"

    pdfs = list((var / "files").rglob("*.pdf"))
    assert len(pdfs) >= 3 and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    emails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in (var / "mail").glob("*.eml")]
    assert len(emails) >= 11
    assert {str(m["X-Email-Kind"]) for m in emails} == KINDS
    assert all(IDENTIFIER.fullmatch(str(m["X-Order-Identifier"])) for m in emails)
    assert_worker_lines_name_their_order(var / "log" / "worker.log")


def assert_worker_lines_name_their_order(log: Path) -> None:
    """Every line of ours that mentions an order carries it (and the task id) in its prefix."""
    lines = [line for line in log.read_text().splitlines() if " ticketq." in line and IDENTIFIER.search(line)]
    assert lines, "the worker logged nothing about orders"
    for line in lines:
        prefix = re.search(r"\[task=(\S+) order=(\S+)\]", line)
        assert prefix and prefix.group(1) != "-", line
        assert prefix.group(2) in IDENTIFIER.findall(line.split("]", 1)[1]), line


@pytest.mark.timeout(180)
def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path, launched: list[subprocess.Popen[bytes]]) -> None:
    var, out = tmp_path / "var", tmp_path / "demo.out"
    demo = start(["demo"], clean_env(var), out)
    launched.append(demo)
    sessions = sessions_of(demo, var / "run")
    time.sleep(1)
    demo.send_signal(signal.SIGINT)
    code = demo.wait(timeout=60)
    assert code == 130, out.read_text()
    assert "interrupted" in out.read_text()
    assert alive(sessions) == {}
    assert not list((var / "run").glob("*.pid"))


@pytest.mark.slow(30)
@pytest.mark.timeout(240)
def test_up_brings_back_a_redis_and_a_worker_that_die_then_stops_on_ctrl_c(
        tmp_path: Path, launched: list[subprocess.Popen[bytes]]) -> None:
    """The real stack (embedded Redis, SQLite, API, worker, beat) under `ticketq up`. SIGKILL its
    Redis: the supervisor starts it again on its port, the worker reconnects without a restart (beat
    may exit on it and be restarted), the API's health answers 200 again. SIGKILL the worker's whole
    process group: it is started again and reports ready. Ctrl-C then stops everything. One stack for
    the three: each costs a start."""
    var, out, port = tmp_path / "var", tmp_path / "up.out", free_port()
    env = clean_env(var, DATABASE_URL=f"sqlite:///{tmp_path / 'up.db'}", FILES_DIR=str(tmp_path / "files"))
    up = start(["up", "--port", str(port)], env, out)
    launched.append(up)
    sessions = sessions_of(up, var / "run")
    api = f"http://127.0.0.1:{port}"

    def said() -> str:  # every child's output and the supervisor's notes are on up's terminal
        return out.read_text()

    def running(ready: Callable[[], bool], what: str, timeout: float = 90) -> None:
        wait_until(lambda: up.poll() is None and ready(), timeout, f"{what}; `ticketq up` said: {said()}")

    running(lambda: "ticketq is up" in said(), "the banner, once every part answers")
    assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200

    connected = said().count("Connected to redis://")
    os.killpg(sessions["redis"], signal.SIGKILL)
    running(lambda: "redis restarted (pid" in said(), "Redis started again")
    running(lambda: said().count("Connected to redis://") > connected, "the worker to reconnect")
    running(lambda: healthz_ok(api), "the API's health")
    assert "worker restarted" not in said()

    ready = said().count(" ready.")
    os.killpg(sessions["worker"], signal.SIGKILL)
    running(lambda: said().count(" ready.") > ready, "the new worker to report ready")
    assert f"worker (pid {sessions['worker']}) exited with status -9" in said()
    assert "worker restarted (pid" in said() and "api restarted" not in said()

    restarted = {path.stem: int(path.read_text()) for path in (var / "run").glob("*.pid")}
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 0, out.read_text()
    assert alive(sessions) == {} and alive(restarted) == {}
