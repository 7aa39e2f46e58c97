"""A worker's own /metrics on WORKER_METRICS_PORT, for every pool child at once.

Celery's prefork children each record their own values; prometheus_client's multiprocess mode has
each process write them to files in PROMETHEUS_MULTIPROC_DIR, and the worker's main process serves
the sum. The mode is chosen when prometheus_client is first imported, from the environment, and the
`celery` command imports it before our app (Flower's command plugin does): so when the directory is
not in the environment yet, the worker makes a private one and executes itself again with it, on
`import_modules`, before it imports the task modules and forks any child. Set PROMETHEUS_MULTIPROC_DIR
yourself to skip that step (one directory per worker; it is emptied at start).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from celery.signals import import_modules, worker_process_shutdown, worker_ready, worker_shutdown

from core import multiproc
from core.settings import settings

log = logging.getLogger("ticketq.worker.metrics")

PRIVATE = "TICKETQ_PRIVATE_METRICS_DIR"  # the directory this worker made, removed when it stops
_state: dict[str, Any] = {}


def _is_worker_command() -> bool:
    """Inside `celery worker` (not beat, flower or inspect, which import the app too)."""
    context = click.get_current_context(silent=True)
    return context is not None and context.command.name == "worker"


@import_modules.connect
def _prepare_directory(**_: Any) -> None:
    if settings.worker_metrics_port is None or "directory" in _state or not _is_worker_command():
        return
    if not os.environ.get(multiproc.VARIABLE):
        os.environ[PRIVATE] = str(multiproc.prepare("ticketq-worker-metrics-"))
        if multiproc.too_late():  # the same command line again, now in multiprocess mode from the start
            log.info("worker metrics: starting again with %s=%s", multiproc.VARIABLE, os.environ[PRIVATE])
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606 (our own command line)
    directory = multiproc.prepare("ticketq-worker-metrics-")
    _state["directory"] = directory
    _state["private"] = os.environ.get(PRIVATE) == str(directory)


@worker_ready.connect
def _serve(**_: Any) -> None:
    if "directory" not in _state:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(_state["directory"]))  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(settings.worker_metrics_port or 0, registry=registry)
    _state["server"] = server
    log.info("worker metrics on port %s (%s)", server.server_port, _state["directory"])


@worker_process_shutdown.connect
def _child_gone(pid: int | None = None, **_: Any) -> None:
    # A pool child's live gauges end with it; its counters and histograms keep counting in the sum.
    if "directory" in _state:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), str(_state["directory"]))  # type: ignore[no-untyped-call]


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    server = _state.pop("server", None)
    if server is not None:
        server.shutdown()
    directory: Path | None = _state.pop("directory", None)
    if directory is not None and _state.pop("private", False):
        shutil.rmtree(directory, ignore_errors=True)
