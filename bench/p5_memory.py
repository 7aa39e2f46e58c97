"""P5 worker memory while it confirms a long run of orders: resident size of the whole worker
(parent and prefork children, from /proc) after warm-up against the end of the run.

`make bench-memory` (`python -m bench --only p5`) runs the issue's full 5,000 orders; inside `make bench`,
after P1, P5 confirms only as many orders as fit its time budget at P1's measured rate.
"""

from __future__ import annotations

import time

from bench.harness import Harness
from bench.monitor import Sampler, load_average, tree_rss_kib
from bench.report import Row, fmt

QUICK_ORDERS = 10
ISSUE_ORDERS = 5_000  # when P1 did not run in this process: `make bench-memory`
BUDGET = 150.0  # seconds of confirming at P1's rate inside `make bench`: what fits its 10 minutes on 2 cores


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.p1_throughput import WARM_UP, start_worker, warm_up
    from bench.workload import complete_all, factory, make_pending, seed_event, wait_for_emails

    assert h.sink is not None
    rate = h.measured.get("p1_rate")
    count = QUICK_ORDERS if quick else min(ISSUE_ORDERS, max(1_000, int(rate * BUDGET))) if rate else ISSUE_ORDERS
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, count, first=WARM_UP)
    worker = start_worker(h, "p5-worker")
    pids: set[int] = set()
    try:
        warm_up(h, seed, db, first=0)
        baseline = sum(tree_rss_kib(worker).values())

        def sample() -> int:
            sizes = tree_rss_kib(worker)
            pids.update(sizes)
            return sum(sizes.values())
        sampler = Sampler(sample, 0.5)
        sampler.start()
        started = time.time()
        complete_all(db, orders)
        wait_for_emails(h.sink.snapshot, orders, 60 + count * 2)
        elapsed = time.time() - started
        samples = [v for _, v in sampler.stop()]
        final = sum(tree_rss_kib(worker).values())
    finally:
        h.stop(worker)
    peak = max(samples or [final])
    tail = samples[-max(1, len(samples) // 10):] or [final]
    end = sum(tail) / len(tail)
    growth = (end - baseline) / baseline * 100
    # The second tenth of the run: children have met every code path once (first-use caches filled).
    settled = samples[len(samples) // 10:max(len(samples) // 10 + 1, len(samples) // 5)] or [baseline]
    settled_mean = sum(settled) / len(settled)
    later = (end - settled_mean) / settled_mean * 100
    recycled = max(0, len(pids) - 3)  # the parent and its first two children
    rows = [
        Row("P5", f"worker RSS after warm-up / end of {count:,} orders ({elapsed:.0f} s)",
            f"{baseline / 1024:.0f} / {end / 1024:.0f} MiB"),
        Row("P5", f"worker memory growth (end vs warm-up, {count:,} orders)", fmt(growth, "%", 1), "<= 10 %",
            growth <= 10),
        Row("P5", "growth from the second tenth of the run to the end (diagnostic)", fmt(later, "%", 1)),
        Row("P5", "peak worker RSS during the run", f"{peak / 1024:.0f} MiB"),
    ]
    scope = (f"the full {ISSUE_ORDERS:,} (`make bench-memory`)" if count == ISSUE_ORDERS else
             f"as many as P1's measured rate confirms in {BUDGET:.0f} s, so that `make bench` stays within 10 minutes "
             f"on 2 cores (the full {ISSUE_ORDERS:,}: `make bench-memory`)")
    notes = [f"P5: {count:,} orders, {scope}; load average at the end {load_average()}. RSS is the sum over the worker "
             "parent and its prefork children, sampled every 0.5 s; 'end' is the mean of the last tenth of the "
             f"samples. Children replaced during the run (worker_max_tasks_per_child / max_memory_per_child): "
             f"{recycled}."]
    return rows, notes
