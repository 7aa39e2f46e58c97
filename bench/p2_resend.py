"""P2 resend-email requests per second through the API (a real `ticketq api` process) against raw
`send_task` publishing of the same job in the same run, and latency at a steady 200 requests/s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.harness import Harness
from bench.report import Row, fmt
from bench.servers import Proc

REQUESTS, QUICK_REQUESTS = 3_000, 100
CLIENTS = 16
STEADY_RATE, STEADY_SECONDS, QUICK_STEADY_SECONDS = 200, 10, 1
STEADY_TIMEOUT = 5.0  # an answer slower than this counts as a failure (status 0), so a stalled API ends the run
ORDERS = 20
UNLIMITED = "1000000/minute"
API_WORKERS = 2  # `ticketq api --workers 2`: one process per core


def tree_cpu_seconds(proc: Proc) -> float:
    """User + system CPU of a process and its children (uvicorn's worker processes), from /proc."""
    import os
    from pathlib import Path

    total = 0
    for pid in [proc.pid, *proc.children()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


async def closed_loop(url: str, token: str, orders: list[str], total: int) -> tuple[float, Counter[int]]:
    """CLIENTS keep-alive connections sending back to back: the API's ceiling."""
    import httpx

    codes: Counter[int] = Counter()
    queue = iter(range(total))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            for n in queue:
                r = await c.post("/v1/orders/resend-email", json={"data": {"order": orders[n % len(orders)]}})
                codes[r.status_code] += 1
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return total / (time.perf_counter() - started), codes


async def open_loop(url: str, token: str, orders: list[str], rate: float,
                    seconds: float) -> tuple[list[float], Counter[int], float]:
    """Requests issued on a fixed schedule whatever the answers take; latency of each, in seconds."""
    import httpx

    codes: Counter[int] = Counter()
    latencies: list[float] = []
    lag = 0.0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=STEADY_TIMEOUT,
                                 limits=limits) as c:
        async def one(n: int) -> None:
            began = time.perf_counter()
            try:
                r = await c.post("/v1/orders/resend-email", json={"data": {"order": orders[n % len(orders)]}})
                codes[r.status_code] += 1
            except httpx.HTTPError:  # a timeout under overload: counted as status 0, with the time it took
                codes[0] += 1
            latencies.append(time.perf_counter() - began)
        tasks = []
        started = time.perf_counter()
        for n in range(int(rate * seconds)):
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            lag = max(lag, time.perf_counter() - due)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return latencies, codes, lag


def raw_send_task(orders: list[str], total: int) -> float:
    from bench.workload import ORGANIZER
    from models.outbox import ORDERS_QUEUE, RESEND_TASK
    from worker.app import app

    app.send_task(RESEND_TASK, args=[orders[0], ORGANIZER], queue=ORDERS_QUEUE)  # connect first
    started = time.perf_counter()
    for n in range(total):
        app.send_task(RESEND_TASK, args=[orders[n % len(orders)], ORGANIZER], queue=ORDERS_QUEUE)
    return total / (time.perf_counter() - started)


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import complete_all, factory, make_pending, percentile, seed_event

    total = QUICK_REQUESTS if quick else REQUESTS
    seconds = QUICK_STEADY_SECONDS if quick else STEADY_SECONDS
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, ORDERS)
    complete_all(db, orders)  # no worker runs: the jobs only pile up in Redis
    env = {"RESEND_LIMIT_PER_USER": UNLIMITED, "RESEND_LIMIT_PER_IP": UNLIMITED}
    api, url = h.api("p2-api", extra_env=env, workers=API_WORKERS)
    try:
        asyncio.run(closed_loop(url, seed.token, orders, 50))  # warm-up: connections, caches
        cpu_before = tree_cpu_seconds(api)
        api_rate, codes = asyncio.run(closed_loop(url, seed.token, orders, total))
        cpu_ms = (tree_cpu_seconds(api) - cpu_before) * 1000 / total
        raw_rate = raw_send_task(orders, total)
        latencies, steady_codes, lag = asyncio.run(open_loop(url, seed.token, orders, STEADY_RATE, seconds))
    finally:
        h.stop(api)
    latencies.sort()
    ratio = api_rate / raw_rate
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    ok = codes == Counter({202: total}) and set(steady_codes) == {202}
    rows: list[Any] = [
        Row("P2", f"resend-email through the API ({CLIENTS} clients, {total:,} requests)", fmt(api_rate, "req/s", 0)),
        Row("P2", "API CPU per request (closed loop)", fmt(cpu_ms, "ms", 2), "<= 1.5 ms", cpu_ms <= 1.5),
        Row("P2", "raw send_task publishing, same job (reference)", fmt(raw_rate, "jobs/s", 0)),
        Row("P2", "API / raw send_task", fmt(ratio, "", 2), ">= 0.5", ratio >= 0.5 and ok),
        Row("P2", f"latency at {STEADY_RATE} req/s for {seconds} s: p50", fmt(p50, "ms", 1)),
        Row("P2", f"latency at {STEADY_RATE} req/s: p99", fmt(p99, "ms", 1), "< 20 ms", p99 < 20 and ok),
    ]
    notes = [f"P2: `ticketq api --workers {API_WORKERS}` (uvicorn) with RESEND_LIMIT_PER_USER/IP raised to "
             f"{UNLIMITED} so the limits count every request but never refuse; every request is a "
             f"co-organizer's valid resend (202) of one of {ORDERS} completed orders; no worker consumes during "
             "P2. Raw publishing is `app.send_task('orders.resend_confirmation', …)` in a loop in the bench "
             f"process. CPU per request: user + system time of the API's processes over the closed loop, divided "
             f"by its requests. Status codes: closed loop {dict(codes)}, steady {dict(steady_codes)} (0 = no answer "
             f"within {STEADY_TIMEOUT:g} s); the load generator (httpx, same 2 cores) fell behind its schedule by at "
             f"most {lag * 1000:.0f} ms."]
    return rows, notes
