"""P4 latency from an order's completion (its commit) to all of its emails accepted by SMTP, with orders
arriving steadily at half the rate P1 measured."""

from __future__ import annotations

import time

from bench.harness import Harness
from bench.monitor import load_average
from bench.report import Row, fmt

ORDERS, QUICK_ORDERS = 120, 6
FALLBACK_RATE = 2.0  # orders/s, when P1 did not run in this process


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.p1_throughput import WARM_UP, start_worker, warm_up
    from bench.workload import complete, factory, make_pending, percentile, seed_event, wait_for_emails

    assert h.sink is not None
    count = QUICK_ORDERS if quick else ORDERS
    rate = h.measured.get("p1_rate", 2 * FALLBACK_RATE) / 2
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, count, first=WARM_UP)
    worker = start_worker(h, "p4-worker")
    try:
        warm_up(h, seed, db, first=0)
        committed: dict[str, float] = {}
        started = time.monotonic()
        for n, identifier in enumerate(orders):  # open loop: the schedule does not wait for the worker
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            committed[identifier] = complete(db, identifier)
        accepted = wait_for_emails(h.sink.snapshot, orders, 120)
    finally:
        h.stop(worker)
    last: dict[str, float] = {}
    counts: dict[str, int] = {}
    for a in accepted:
        if a.order in committed:
            last[a.order] = max(last.get(a.order, 0.0), a.at)
            counts[a.order] = counts.get(a.order, 0) + 1
    latencies = sorted(last[o] - committed[o] for o in committed if counts.get(o, 0) >= 3)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    source = "half of P1's rate in this run" if "p1_rate" in h.measured else f"P1 did not run: {rate:g}/s"
    rows = [
        Row("P4", f"completed -> all 3 emails accepted, p50 ({len(latencies)}/{count} orders at {rate:.2f}/s, "
            f"{source})", fmt(p50, "s"), "<= 0.3 s", p50 <= 0.3 and len(latencies) == count),
        Row("P4", "completed -> all 3 emails accepted, p99", fmt(p99, "s"), "<= 1 s",
            p99 <= 1 and len(latencies) == count),
    ]
    notes = [f"P4: {count} orders completed one by one at {rate:.2f} orders/s (half of P1's measured rate) on the "
             "same worker setup as P1 (every queue); latency runs from the commit of the completion to the SMTP sink "
             f"accepting the last of the order's 3 emails. Load average at the end: {load_average()}."]
    return rows, notes
