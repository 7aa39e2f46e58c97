"""The supervisor behind `ticketq up` / `demo` leaves no process behind, whatever its children do."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ticketq.devserver import ChildFailed, Supervisor

ENV = dict(os.environ)


def sessions_alive(sup: Supervisor) -> list[str]:
    out: list[str] = []
    for child in sup.children:
        out += subprocess.run(["pgrep", "-s", str(child.pid)], capture_output=True, text=True).stdout.split()
    return out


def test_stop_kills_grandchildren_and_children_that_ignore_sigterm(tmp_path: Path) -> None:
    with Supervisor(tmp_path, stop_timeout=1) as sup:
        sup.spawn("plain", ["sleep", "60"], ENV)
        sup.spawn("parent", ["sh", "-c", "sleep 60 & sleep 60 & wait"], ENV)
        sup.spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"], ENV)
        time.sleep(0.3)
        assert len(sessions_alive(sup)) >= 6
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
