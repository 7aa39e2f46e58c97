"""Watching a run: background sampling, and the CPU each part of the machine spent."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.harness import Harness
    from bench.servers import Proc


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


class CpuAccount:
    """CPU seconds spent by each part of a run between `start()` and `stop()`, and by the whole machine."""

    WORKER = "worker (parent + children)"
    MACHINE = "machine, every process"

    def __init__(self, h: Harness, worker: Proc) -> None:
        self.h, self.worker = h, worker
        self.database = h.database_url.rsplit("/", 1)[1]
        self.before: dict[str, float] = {}
        self.load_before = self.load_after = ""

    def _sink_thread(self) -> int | None:
        thread = getattr(getattr(self.h.sink, "controller", None), "_thread", None)  # aiosmtpd's loop thread
        return getattr(thread, "native_id", None)

    def _now(self) -> dict[str, float]:
        assert self.h.redis is not None and self.h.redis.process is not None
        live_children = sum(cpu_seconds(p, children=False) for p in self.worker.children())
        sink = thread_cpu_seconds(self._sink_thread())
        return {
            self.WORKER: cpu_seconds(self.worker.pid) + live_children,
            "PostgreSQL backends": sum(cpu_seconds(p) for p in postgres_backends(self.database)),
            "Redis": cpu_seconds(self.h.redis.process.pid),
            "SMTP sink (its thread)": sink,
            "bench driver (the rest of its process)": cpu_seconds(os.getpid(), children=False) - sink,
            self.MACHINE: machine_busy_seconds(),
        }

    def start(self) -> CpuAccount:
        self.load_before = load_average()
        self.before = self._now()
        return self

    def stop(self) -> dict[str, float]:
        after = self._now()
        self.load_after = load_average()
        spent = {k: after[k] - self.before.get(k, 0.0) for k in after}
        ours = sum(v for k, v in spent.items() if k != self.MACHINE)
        spent["anything else on the machine"] = max(0.0, spent[self.MACHINE] - ours)
        return spent
