"""Watching a run: background sampling, and the CPU each part of the machine spent."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ticketq.processes import Process


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


def thread_cpu_seconds(tid: int | None) -> float:
    """User + system CPU of one thread of this process, from /proc/self/task/<tid>/stat."""
    if tid is None:
        return 0.0
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine spent (all cores), from /proc/stat: what else shared them."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def postgres_backends(database: str) -> list[int]:
    """The server processes serving one database (their titles name it)."""
    out = subprocess.run(["pgrep", "-f", f"postgres: .* {database} "], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def tree_rss_kib(proc: Process) -> dict[int, int]:
    """Resident memory of the process and its children, from /proc."""
    sizes = {}
    for pid in [proc.pid, *proc.children()]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), None)
        if line:
            sizes[pid] = int(line.split()[1])
    return sizes
