"""R6 PostgreSQL crashing under load: a cluster of the script's own (Debian's server binaries, `make
postgres-deps`) stopped with `pg_ctl stop -m immediate` (what an OOM kill, a host loss or a managed
failover looks like to clients) for 15 s while payments and resends keep coming, then started again;
a burst of payments just before the crash leaves jobs waiting through it.
Goals: 0 emails missing, 0 duplicates (no process is killed), the work accepted before the crash done
within 30 s of PostgreSQL returning, the API answering 503 at once meanwhile, every process alive,
and the orders whose window closed during the outage expired after it.

The stack is R2's: 2 API processes, a worker `-c 2` on all queues, beat (the expiry sweep every 5 s
so that the expiries show within the run), an SMTP sink counting by Message-ID.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.harness import Harness
from bench.report import Row
from bench.servers import Restarter
from chaos.metrics_watch import MetricsWatch
from chaos.r2_redis_outage import RESEND_RATE, UNLIMITED, Call, call, drive, expected_emails, wait_for

# About the 120 orders over the run: the worker keeps up, so the time to the last email after
# the restart measures recovery, not a backlog of rendering.
RATE = 2.0  # payments/s
BEFORE, OUTAGE, AFTER = 20.0, 15.0, 20.0
QUICK_BEFORE, QUICK_OUTAGE, QUICK_AFTER = 5.0, 5.0, 5.0
WAIT = 90.0  # how long after PostgreSQL is back the emails may take before they count as missing
GOAL_SECONDS = 30.0  # contract section 8
DUE_ORDERS = 10  # pending orders whose window closes during the outage
# Payments sent together just before the crash: jobs still waiting when PostgreSQL goes away (the
# worker keeps up with the steady load, so without them nothing would wait through the outage).
BURST = 12
SWEEP = "5"


@dataclass
class Health:
    """/healthz of one API process, polled every half second: (time, status)."""

    seen: list[tuple[float, int]] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)

    def poll(self, url: str) -> None:
        import httpx

        with httpx.Client(base_url=url, timeout=5) as client:
            while not self.halt.wait(0.5):
                try:
                    self.seen.append((time.time(), client.get("/healthz").status_code))
                except httpx.HTTPError:
                    self.seen.append((time.time(), 0))


def pay_together(urls: list[str], token: str, orders: list[str], calls: list[Call], paid: list[str]) -> None:
    """Pay `orders` at once, alternating between the API processes; their calls join the run's."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=30) for u in urls]
    try:
        with ThreadPoolExecutor(len(orders)) as pool:
            results = list(pool.map(lambda n: call(clients[n % len(clients)], "pay", orders[n]), range(len(orders))))
    finally:
        for client in clients:
            client.close()
    calls.extend(results)
    paid.extend(r.order for r in results if r.status == 200)


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from tests.pg_cluster import PgCluster

    h.reset()
    cluster = PgCluster()
    try:
        cluster.init()
        return crash_under_load(h, cluster, quick)
    finally:
        cluster.close()


def crash_under_load(h: Harness, cluster: Any, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import factory, make_pending, seed_event
    from migrations.migrate import upgrade
    from models.db import get_engine

    assert h.sink is not None
    before, outage, after = (QUICK_BEFORE, QUICK_OUTAGE, QUICK_AFTER) if quick else (BEFORE, OUTAGE, AFTER)
    url = cluster.create_database("ticketq_r6")
    upgrade(url)
    db = factory(url)
    seed = seed_event(db)
    orders = make_pending(db, seed, int(RATE * (before + outage + after)) + 1)
    due = make_pending(db, seed, DUE_ORDERS, first=100_000)
    burst = make_pending(db, seed, BURST, first=200_000)
    env = {"DATABASE_URL": url, "RESEND_LIMIT_PER_USER": UNLIMITED, "RESEND_LIMIT_PER_IP": UNLIMITED,
           "EXPIRY_SWEEP_SECONDS": SWEEP}
    worker, beat = h.worker("r6-worker", concurrency=2, extra_env=env), h.beat("r6-beat", extra_env=env)
    (api1, url1), (api2, url2) = h.api("r6-api-1", extra_env=env), h.api("r6-api-2", extra_env=env)
    procs = [worker, beat, api1, api2]
    supervisor = Restarter(procs)
    supervisor.start()
    health = Health()
    watch = MetricsWatch(url1).start()  # what an operator's Prometheus would have seen (issue 32)
    calls: list[Call] = []
    paid: list[str] = []
    started = time.time()
    _fall_due(db, due, started + before + min(5.0, outage / 2))
    until = started + before + outage + after
    threads = [threading.Thread(target=drive, args=([url1, url2], seed.token, kind, orders, rate, until, calls, paid))
               for kind, rate in (("pay", RATE), ("resend", RESEND_RATE))]
    threads.append(threading.Thread(target=health.poll, args=(url1,), daemon=True))
    try:
        for t in threads:
            t.start()
        time.sleep(before)
        pay_together([url1, url2], seed.token, burst, calls, paid)
        down = cluster.crash()
        time.sleep(outage)
        cluster.start()
        up = time.time()
        for t in threads[:2]:
            t.join()
        expected = expected_emails(calls)
        missing_at_deadline = wait_for(h, expected, up + WAIT)
        expired = _wait_expired(db, due, up + WAIT)
        watch.settled(max(time.time() + 5, up + GOAL_SECONDS + 3))
        watch.stop()
        health.halt.set()
        alive = {p.name: p.popen is not None and p.poll() is None for p in procs}
        restarts = supervisor.stop()
        accepted = h.sink.snapshot()
    finally:
        supervisor.halt.set()
        health.halt.set()
        watch.stop()
        for proc in procs:
            h.stop(proc)
        get_engine(url).dispose()
    return judge(url, calls, expected, accepted, down, up, missing_at_deadline, alive, restarts, due, expired,
                 health, time.time() - started, watch)


def _fall_due(db: Any, identifiers: list[str], at: float) -> None:
    """These pending orders' windows close at `at` (during the outage)."""
    import sqlalchemy as sa

    from models.orders import Order

    with db() as session, session.begin():
        session.execute(sa.update(Order).where(Order.identifier.in_(identifiers))
                        .values(expires_at=datetime.fromtimestamp(at, UTC)))


def _wait_expired(db: Any, identifiers: list[str], deadline: float) -> dict[str, datetime | None]:
    """Each order's expired_at once all expired (or at the deadline)."""
    import sqlalchemy as sa

    from models.orders import Order

    while True:
        with db() as session:
            rows = dict(session.execute(sa.select(Order.identifier, Order.expired_at)
                                        .where(Order.identifier.in_(identifiers))).all())
        if all(rows.values()) or time.time() > deadline:
            return rows
        time.sleep(0.5)


def judge(url: str, calls: list[Call], expected: Counter[tuple[str, str]], accepted: list, down: float, up: float,
          missing_at_deadline: int, alive: dict[str, bool], restarts: list[tuple[float, str, int | None]],
          due: list[str], expired: dict[str, datetime | None], health: Health,
          elapsed: float, watch: MetricsWatch) -> tuple[list[Row], list[str]]:
    from chaos.r2_redis_outage import missing_emails
    from chaos.tally import tally
    from services.recipients import CONFIRMATION_BATCH

    got = tally(url, accepted, {order for order, _ in expected})
    missing = missing_emails(expected, got.emails_of())
    before = {c.order for c in calls if c.kind == "pay" and c.status == 200 and c.at < down}
    firsts = [times[0] for (order, _, _, batch), times in got.copies.items()
              if order in before and batch == CONFIRMATION_BATCH]
    owed_after = sum(1 for t in firsts if t >= down)
    last = max(firsts, default=up) - up
    during = [c for c in calls if down <= c.at <= up]
    codes = Counter(f"{c.kind} {c.status}" for c in during)
    slowest = max((c.seconds for c in during), default=0.0)
    unclear = sum(1 for c in during if not c.clear or c.status in (0, 500))
    health_during = Counter(s for t, s in health.seen if down + 1 <= t <= up)
    healthy_again = next((t - up for t, s in health.seen if t >= up and s == 200), float("nan"))
    late = [e.timestamp() - up for e in expired.values() if e is not None]
    n_expired = len(late)
    jobs = sum(expected.values())
    rows = [
        Row("R6", f"emails missing {WAIT:.0f} s after PostgreSQL came back ({jobs} expected, run of {elapsed:.0f} s)",
            str(missing), "0", missing == 0),
        Row("R6", f"duplicates ({got.duplicates} by order+kind+recipient+batch; {got.repeated_message_ids} repeats "
            "of a Message-ID)", str(got.duplicates), "0", got.duplicates == 0),
        Row("R6", f"seconds from PostgreSQL back to the last email of the work accepted before the crash "
            f"({len(before)} orders, {owed_after} of their emails still owed at the crash)",
            f"{max(0.0, last):.1f} s" if missing == 0 else f"> {WAIT:.0f} s", f"<= {GOAL_SECONDS:.0f} s",
            missing == 0 and last <= GOAL_SECONDS),
        Row("R6", f"API answers during the {up - down:.0f} s outage",
            ", ".join(f"{k}: {n}" for k, n in sorted(codes.items())) or "none", "clear answers",
            unclear == 0 and bool(during)),
        Row("R6", "slowest API answer during the outage", f"{slowest:.2f} s", "< 1 s", slowest < 1),
        Row("R6", "processes alive at the end (worker, beat, API x2); exits restarted by the script",
            f"{sum(alive.values())}/{len(alive)}; {len(restarts)}", f"{len(alive)}/{len(alive)}; 0",
            all(alive.values()) and not restarts),
        Row("R6", f"orders that fell due during the outage expired after it (sweep every {SWEEP} s)",
            f"{n_expired}/{len(due)}, the last +{max(late, default=float('nan')):.1f} s after PostgreSQL was back",
            f"{len(due)}/{len(due)}", n_expired == len(due)),
    ]
    # the age must be back to 0 within the recovery goal (the work accepted before done within GOAL_SECONDS)
    watched, watch_note = watch.judge("R6", "PostgreSQL", down, up, GOAL_SECONDS)
    rows += watched
    notes = [f"R6: a PostgreSQL cluster of the script's own (initdb, pg_ctl as the postgres user) stopped with "
             f"`pg_ctl stop -m immediate` {down - (calls[0].at if calls else down):.0f} s into the load for "
             f"{up - down:.0f} s, then started on the same port with its data; {RATE:g} payments/s and "
             f"{RESEND_RATE:g} resend requests/s alternate between 2 API processes; a worker `-c 2` on all queues "
             f"and beat run throughout; no process is killed. Expected: 3 emails per accepted payment (200), 2 more "
             f"per accepted resend (202); the wait ended with {missing_at_deadline} missing. /healthz during the "
             f"outage: {dict(sorted(health_during.items()))}; 200 again +{healthy_again:.1f} s after PostgreSQL was "
             "back. 'Clear' answers are a JSON:API error object or the documented success body.", watch_note]
    return rows, notes
