"""Which ticketq runs: the command line and the worker's log say the installed version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from tests.backends import CeleryWorker


def test_ticketq_version_prints_the_installed_version() -> None:
    out = subprocess.run([sys.executable, "-m", "ticketq.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == f"ticketq {version('ticketq')}"


def test_a_ready_worker_logs_its_version(celery_worker: CeleryWorker) -> None:
    assert f"ticketq {version('ticketq')} worker ready" in celery_worker.logfile.read_text()
