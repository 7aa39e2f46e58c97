"""R1 1,000 orders while a worker child is SIGKILLed every 2 s: no order may miss an email; each
duplicate must be explained by a kill between the SMTP server's acceptance and the record's commit."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from bench.harness import Harness
from bench.report import Row
from bench.servers import Proc

ORDERS, QUICK_ORDERS = 1_000, 20
KILL_EVERY = 2.0
EXPLAIN_WINDOW = 1.0  # a kill this soon after a first acceptance can have hit before the record's commit


class Killer(threading.Thread):
    """SIGKILLs a random prefork child of `worker` (never anything else) every KILL_EVERY seconds."""

    def __init__(self, worker: Proc) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.kills: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(KILL_EVERY):
            children = self.worker.children()
            if not children:
                continue
            pid = random.choice(children)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills.append((time.time(), pid))


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import complete_all, factory, make_pending, seed_event, wait_for_emails

    assert h.sink is not None
    count = QUICK_ORDERS if quick else ORDERS
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, count)
    worker = h.worker("r1-worker", concurrency=2, extra_env={"OUTBOX_RELAY_SECONDS": "3600"})
    killer = Killer(worker)
    started = time.time()
    try:
        complete_all(db, orders)
        killer.start()
        accepted = wait_for_emails(h.sink.snapshot, orders, 30 + count * 1.0)
        killer.halt.set()
        killer.join(5)
        time.sleep(3)  # anything a last kill left to redeliver
        accepted = h.sink.snapshot()
    finally:
        killer.halt.set()
        h.stop(worker)
    return judge(h, orders, accepted, killer.kills, time.time() - started, count)


def judge(h: Harness, orders: list[str], accepted: list, kills: list[tuple[float, int]], elapsed: float,
          count: int) -> tuple[list[Row], list[str]]:
    import sqlalchemy as sa

    from bench.workload import EMAILS_PER_ORDER, duplicates
    from models.db import get_sessionmaker
    from models.deliveries import EmailDelivery

    wanted = set(orders)
    logical: dict[str, set[tuple[str, tuple[str, ...]]]] = {o: set() for o in orders}
    first: dict[tuple[str, str, tuple[str, ...]], float] = {}
    copies: list[tuple[float, float]] = []
    for a in sorted(accepted, key=lambda a: a.at):
        if a.order not in wanted:
            continue
        key = (a.order, a.kind, a.recipients)
        logical[a.order].add((a.kind, a.recipients))
        if key in first:
            copies.append((first[key], a.at))
        else:
            first[key] = a.at
    missing = sum(1 for kinds in logical.values() if len(kinds) < EMAILS_PER_ORDER)
    by_id, by_logical = duplicates(a for a in accepted if a.order in wanted)
    explained = sum(1 for t1, _ in copies if any(t1 <= k <= t1 + EXPLAIN_WINDOW for k, _ in kills))
    with get_sessionmaker(h.database_url)() as session:
        by_state = sa.select(EmailDelivery.state, sa.func.count()).group_by(EmailDelivery.state)
        states = dict(session.execute(by_state).all())
    rows = [
        Row("R1", f"orders missing any email ({count} orders, {len(kills)} child SIGKILLs, {elapsed:.0f} s)",
            str(missing), "0", missing == 0),
        Row("R1", "duplicate emails (by Message-ID / by order+kind+recipient)", f"{by_id} / {by_logical}", "reported"),
        Row("R1", f"duplicates explained by a kill within {EXPLAIN_WINDOW:g} s after the first acceptance",
            f"{explained} of {len(copies)}", "all", explained == len(copies)),
    ]
    notes = [f"R1: one worker `-c 2` on all queues; every {KILL_EVERY:g} s a random prefork child gets SIGKILL "
             "(acks_late + reject_on_worker_lost give its job back). Counted at the sink by `X-Order-Identifier`, "
             "`X-Email-Kind` and recipient; duplicates are matched to the kill log: a copy is explained when a kill "
             f"fell within {EXPLAIN_WINDOW:g} s after the first copy was accepted (the window between SMTP "
             f"acceptance and the `sent` commit). Delivery records at the end: "
             f"{ {str(k.value): v for k, v in states.items()} }."]
    return rows, notes
