"""A real `celery -A worker beat` process for the tests that run beats of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class Beat:
    def __init__(self, name: str, log: Path, **env: str) -> None:
        self.name, self.log = name, log
        env = {**os.environ, "EXPIRY_SWEEP_SECONDS": "1", "OUTBOX_RELAY_SECONDS": "1", "PYTHONUNBUFFERED": "1", **env}
        args = [sys.executable, "-m", "celery", "-A", "worker", "beat", "-l", "info", "-s", str(log.with_suffix(".db"))]
        with log.open("wb") as out:
            self.process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        wait_until(lambda: needle in self.text(), timeout,
                   lambda: f"{self.name} to log {needle!r}:\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
