"""Flower, started the way docker-compose starts it: never open, and it shows tasks with their arguments.

Task events are off unless TASK_EVENTS says so (they cost CPU on every job), so the test starts
its own worker with TASK_EVENTS=true on a queue of its own: the run's worker sends no task events.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import Backends, CeleryWorker
from tests.waiting import wait_until
from ticketq.embedded import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
AUTH = ("ops", "s3cret-enough")


@pytest.fixture
def flower(backends: Backends, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, FLOWER_BASIC_AUTH=":".join(AUTH))
    log = (tmp_path / "flower.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
                                "--address=127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "flower.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        stop_process(process, 10)
        log.close()


@pytest.fixture
def watched_worker(backends: Backends, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A worker sending task events, as where Flower is deployed: (its hostname, its queue)."""
    name = f"flower-{os.getpid()}-{time.monotonic_ns()}"
    worker = CeleryWorker(tmp_path / "worker.log", concurrency=1, queues=name, hostname=f"{name}@ticketq-test",
                          env={"TASK_EVENTS": "true"}).start()
    try:
        yield f"{name}@ticketq-test", name
    finally:
        worker.stop()


@pytest.mark.slow(8)
@pytest.mark.timeout(120)
def test_flower_refuses_without_credentials_and_lists_tasks_with_arguments(
        flower: str, watched_worker: tuple[str, str]) -> None:
    assert httpx.get(f"{flower}/", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/", auth=("ops", "wrong"), timeout=5).status_code == 401
    assert httpx.get(f"{flower}/", auth=AUTH, timeout=5).status_code == 200

    from worker.celery_app import app

    hostname, queue = watched_worker
    online = f'flower_worker_online{{worker="{hostname}"}} 1.0'
    # Flower's event receiver connects after its HTTP server: its metrics show when it hears the worker.
    wait_until(lambda: online in httpx.get(f"{flower}/metrics", auth=AUTH, timeout=5).text, 60,
               "Flower to hear the worker's events", interval=0.2)
    identifier = "f" * 32  # no such order: the task loads nothing and ends
    sent = app.send_task("orders.confirm", args=[identifier], queue=queue)

    def finished() -> Any:
        task = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json().get(sent.id)
        return task if task and task.get("state") in ("SUCCESS", "FAILURE") else None

    task = wait_until(finished, 60, "Flower to see the task finish", interval=0.2)
    assert task["name"] == "orders.confirm"
    assert identifier in str(task["args"])
