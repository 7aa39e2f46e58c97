"""In-process profile of orders.confirm: CPU per order, rendering vs everything else (issue 12).

    .venv/bin/python -m bench.profile_confirm [--orders 60] [--cprofile out.prof] [--statements]

Creates its own PostgreSQL database on 127.0.0.1:5432 (dropped at the end), starts an aiosmtpd sink
in another process, and runs the Celery task `orders.confirm` eagerly (`apply`, so JobTask's lease
and done marks are in) for each order, as a prefork child would: asynchronous commits, a warm
renderer. Rendering is `render_order` + `order_documents`, the bare loop of P1's render-only limit.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(ADMIN_URL)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def _timed(fn: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - began
    return wrapper


def run(orders: int, cprofile: str | None, statements: bool, freeze: bool,
        threshold: tuple[int, ...] = ()) -> None:
    from models.db import get_engine, get_sessionmaker, use_asynchronous_commit

    use_asynchronous_commit()
    from migrations.migrate import upgrade

    upgrade()
    import sqlalchemy as sa

    import services.pipeline
    import tasks.order_jobs
    from bench.workload import ORGANIZER, make_pending, seed_event
    from models.outbox import pending_job_ids
    from models.status import OrderStatus
    from models.transitions import change_status, load_order
    from services.rendering import freeze_heap, warm_up

    db = get_sessionmaker()
    seed = seed_event(db)
    identifiers = make_pending(db, seed, orders + 2)
    jobs: dict[str, int] = {}
    for identifier in identifiers:
        with db() as session, session.begin():
            change_status(session, load_order(session, identifier), OrderStatus.COMPLETED, by=ORGANIZER)
            jobs[identifier] = pending_job_ids(session)[0]
    warm_up()
    render = [0.0]
    services.pipeline.render_order = _timed(services.pipeline.render_order, render)  # type: ignore[assignment]
    services.pipeline.order_documents = _timed(services.pipeline.order_documents, render)  # type: ignore[assignment]
    counted: list[str] = []
    if statements:
        sa.event.listen(get_engine(), "before_cursor_execute", lambda *a: counted.append(" ".join(a[2].split()[:3])))

    def confirm(identifier: str) -> None:
        result = tasks.order_jobs.confirm.apply(args=[identifier], task_id=f"outbox-{jobs[identifier]}")
        if result.failed():
            raise RuntimeError(result.traceback)

    for identifier in identifiers[:2]:  # first use: SMTP and DB connections, compiled statements
        confirm(identifier)
    render[0], counted[:] = 0.0, []
    collecting = [0.0, 0.0]  # CPU seconds in the cyclic garbage collector, when the current one began

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = time.process_time()
        else:
            collecting[0] += time.process_time() - collecting[1]
    gc.callbacks.append(on_gc)
    if freeze:
        freeze_heap()  # as the worker's children do after their warm-up (tasks/documents.py)
    if threshold:
        gc.set_threshold(*threshold)
    profiler = cProfile.Profile() if cprofile else None
    began, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for identifier in identifiers[2:]:
        confirm(identifier)
    if profiler:
        profiler.disable()
        profiler.dump_stats(cprofile)
    total, wall = time.process_time() - began, time.perf_counter() - wall
    rest = total - render[0]
    print(f"{orders} orders: {total / orders * 1000:.1f} ms CPU per order (wall {wall / orders * 1000:.1f} ms): "
          f"render {render[0] / orders * 1000:.1f} ms, the rest {rest / orders * 1000:.1f} ms; "
          f"efficiency in-process {render[0] / total:.3f}; garbage collector {collecting[0] / orders * 1000:.1f} ms")
    if statements:
        from collections import Counter

        print(f"SQL statements per order: {len(counted) / orders:.1f}", dict(Counter(counted)))
    with db() as session:
        states = session.execute(sa.text("SELECT state, count(*) FROM email_deliveries GROUP BY state")).all()
    print("deliveries:", {str(s): n for s, n in states})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=60)
    parser.add_argument("--cprofile", help="write a cProfile of the measured orders here")
    parser.add_argument("--statements", action="store_true", help="count the SQL statements per order")
    parser.add_argument("--no-freeze", dest="freeze", action="store_false",
                        help="leave the heap to the garbage collector (the worker freezes it after its warm-up)")
    parser.add_argument("--gc-threshold", help="gc.set_threshold() after the warm-up, e.g. 700,10,10")
    args = parser.parse_args()
    name = f"ticketq_p1helper_{secrets.token_hex(3)}"
    port = _free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                             "-l", f"127.0.0.1:{port}"])
    _admin(f"CREATE DATABASE {name}")
    try:
        with tempfile.TemporaryDirectory(prefix="ticketq-profile-") as files:
            os.environ.update({
                "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
                "SMTP_URL": f"smtp://127.0.0.1:{port}", "REDIS_URL": "redis://127.0.0.1:6379/15",
                "FILES_DIR": files, "SECRET_KEY": secrets.token_urlsafe(32), "ENVIRONMENT": "development",
            })
            _wait_for_port(port)
            run(args.orders, args.cprofile, args.statements, args.freeze,
                tuple(int(n) for n in args.gc_threshold.split(",")) if args.gc_threshold else ())
    finally:
        sink.terminate()
        sink.wait()
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
