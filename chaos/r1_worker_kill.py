"""R1 1,000 orders while a worker child is SIGKILLed every 2 s: no order may miss an email; at most 1
duplicate per 100 kills, each explained by a kill between the SMTP server's acceptance and the record's
commit, and carrying the first copy's Message-ID."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from bench.harness import Harness
from bench.report import Row
from ticketq.processes import Process

ORDERS, QUICK_ORDERS = 1_000, 20
KILL_EVERY = 2.0
# A kill this close to a first acceptance can have hit between the final dot and the record's commit: just
# after the sink's timestamp (before the commit), or just before it (the sink read the dot after the kill).
EXPLAIN_WINDOW = 1.0
KINDS = ("confirmation-buyer", "confirmation-attendee", "organizer-notification")


class Killer(threading.Thread):
    """SIGKILLs a random prefork child of `worker` (never anything else) every KILL_EVERY seconds."""

    def __init__(self, worker: Process) -> None:
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
    worker, beat = h.worker("r1-worker", concurrency=2), h.beat("r1-beat")  # beat: the outbox relay, as deployed
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
        h.stop(beat)
    return judge(h, orders, accepted, killer.kills, time.time() - started, count)


def judge(h: Harness, orders: list[str], accepted: list, kills: list[tuple[float, int]], elapsed: float,
          count: int) -> tuple[list[Row], list[str]]:
    import sqlalchemy as sa

    from bench.workload import EMAILS_PER_ORDER, duplicates
    from chaos.tally import per_hundred_kills, tally
    from models.db import get_sessionmaker
    from models.deliveries import EmailDelivery

    got = tally(h.database_url, accepted, orders)
    emails = got.emails_of()
    missing = sum(1 for o in orders if sum(emails[(o, k)] for k in KINDS) < EMAILS_PER_ORDER)
    copies = got.second_copies()
    # Without resends, (order, kind, recipient) is the logical email whatever its Message-ID says.
    by_id, by_address = duplicates(a for a in accepted if a.order in set(orders))
    rate = per_hundred_kills(got.duplicates, len(kills))
    explained = sum(1 for t1, _ in copies if any(abs(k - t1) <= EXPLAIN_WINDOW for k, _ in kills))
    with get_sessionmaker(h.database_url)() as session:
        by_state = sa.select(EmailDelivery.state, sa.func.count()).group_by(EmailDelivery.state)
        states = dict(session.execute(by_state).all())
    rows = [
        Row("R1", f"orders missing any email ({count} orders, {len(kills)} child SIGKILLs, {elapsed:.0f} s)",
            str(missing), "0", missing == 0),
        Row("R1", f"duplicate emails per 100 kills ({got.duplicates} duplicates / {len(kills)} kills)",
            f"{rate:.1f}", "<= 1", got.duplicates <= len(kills) / 100),
        Row("R1", "duplicates carrying the first copy's Message-ID (same Message-ID of same order+kind+recipient)",
            f"{by_id} of {by_address}", "all", by_id == by_address),
        Row("R1", f"duplicates explained by a kill within {EXPLAIN_WINDOW:g} s of the first acceptance",
            f"{explained} of {len(copies)}", "all", explained == len(copies)),
    ]
    notes = [f"R1: one worker `-c 2` on all queues and beat (the outbox relay, default interval); every "
             f"{KILL_EVERY:g} s a random prefork child gets SIGKILL (acks_late + reject_on_worker_lost give its "
             "job back; the relay takes back a job whose holder died). Counted at the sink by `X-Order-Identifier`, "
             "`X-Email-Kind`, recipient and the batch of the delivery record its Message-ID names; duplicates "
             f"are matched to the kill log: a copy is explained when a kill fell within {EXPLAIN_WINDOW:g} s of "
             "the first copy's acceptance (the window from the final dot to the `sent` commit). "
             f"Messages naming no delivery record: {got.unattributed}. Delivery records at the end: "
             f"{ {str(k.value): v for k, v in states.items()} }."]
    return rows, notes
