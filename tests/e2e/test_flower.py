"""Flower, started the way docker-compose starts it: never open, and it shows tasks with their arguments."""

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

from ticketq.embedded import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
AUTH = ("ops", "s3cret-enough")


@pytest.fixture
def flower(tmp_path: Path) -> Iterator[str]:
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


@pytest.mark.timeout(120)
def test_flower_refuses_without_credentials_and_lists_tasks_with_arguments(
        flower: str, celery_worker: Any, broker: Any) -> None:
    assert httpx.get(f"{flower}/", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/", auth=("ops", "wrong"), timeout=5).status_code == 401
    assert httpx.get(f"{flower}/", auth=AUTH, timeout=5).status_code == 200

    from worker.app import app

    time.sleep(2)  # Flower's event receiver connects after its HTTP server
    identifier = "f" * 32  # no such order: the task loads nothing and ends
    sent = app.send_task("orders.confirm", args=[identifier], queue="orders")
    deadline = time.monotonic() + 60
    while True:
        tasks = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
        task = tasks.get(sent.id)
        if task and task.get("state") in ("SUCCESS", "FAILURE"):
            break
        assert time.monotonic() < deadline, f"Flower never saw the task finish: {task}"
        time.sleep(0.5)
    assert task["name"] == "orders.confirm"
    assert identifier in str(task["args"])
