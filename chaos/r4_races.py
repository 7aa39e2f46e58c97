"""R4 two beat processes sweeping expiry every half second while 1,000 payments race the deadlines and
new buyers grab every ticket an expiry frees: no order both completed and expired, nothing oversold."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from bench.harness import Harness
from bench.monitor import Sampler
from bench.report import Row

ORDERS, QUICK_ORDERS = 1_000, 40
SWEEP = 0.5
SPREAD = 15.0  # seconds over which the deadlines fall
JITTER = 0.3  # each payment lands within this many seconds of its order's deadline
PAYERS, THREADS = 4, 4  # processes x threads making the payments, so they keep to their schedule


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    import sqlalchemy as sa

    from bench.workload import factory, make_pending, seed_event
    from models import Order

    count = QUICK_ORDERS if quick else ORDERS
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db, quantity=count)
    orders = make_pending(db, seed, count, tickets=1)
    env = {"EXPIRY_SWEEP_SECONDS": str(SWEEP), "OUTBOX_RELAY_SECONDS": "3600"}
    h.worker("r4-worker", concurrency=2, queues="orders", extra_env=env)
    # Both beats sweep (each its own file schedule, not redbeat's one lock): two sweepers racing the
    # payments and each other is the harder case, and it must still double nothing.
    for name in ("r4-beat-1", "r4-beat-2"):
        h.beat(name, extra_env=env, scheduler="celery.beat:PersistentScheduler")
    base = time.time() + 3
    deadlines = {o: base + SPREAD * n / count for n, o in enumerate(orders)}
    from models.base import utcnow

    now, now_ts = utcnow(), time.time()  # one instant on both clocks: deadlines land where planned
    with db() as session, session.begin():
        for o, at in deadlines.items():
            session.execute(sa.update(Order).where(Order.identifier == o)
                            .values(expires_at=now + timedelta(seconds=at - now_ts)))
    stop = threading.Event()
    held = Sampler(lambda: held_tickets(h, seed.ticket_id), 0.5)
    held.start()
    buyers = [threading.Thread(target=buy_freed_tickets, args=(db, seed, stop, n), daemon=True) for n in range(2)]
    for b in buyers:
        b.start()
    plan = [(o, deadlines[o] + random.uniform(-JITTER, JITTER)) for o in orders]
    slices = [(h.database_url, plan[n::PAYERS]) for n in range(PAYERS)]
    with multiprocessing.get_context("spawn").Pool(PAYERS) as pool:
        results = [r for part in pool.map(pay_slice, slices) for r in part]
    outcomes = Counter(outcome for _, outcome, _ in results)
    offsets = sorted(began - deadlines[o] for o, _, began in results)
    time.sleep(3 * SWEEP + 2)  # the last sweeps
    stop.set()
    for b in buyers:
        b.join(10)
    peaks = [v for _, v in held.stop()]
    rows, notes = judge(h, orders, outcomes, peaks, count, seed.ticket_id)
    from bench.workload import percentile

    close = sum(1 for x in offsets if abs(x) <= 2 * JITTER)
    notes.append(f"R4 timing: payments began {percentile(offsets, 50):+.2f} s (median) / "
                 f"{percentile(offsets, 99):+.2f} s (p99) from their order's deadline; {close} of {count} "
                 f"within ±{2 * JITTER:g} s of it.")
    return rows, notes


def pay_slice(job: tuple[str, list[tuple[str, float]]]) -> list[tuple[str, str, float]]:
    """One payer process: its share of the payments, each at its planned time, THREADS at once."""
    from models.db import get_sessionmaker

    url, plan = job
    db = get_sessionmaker(url)
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda item: pay_at(db, *item), plan))


def pay_at(db: object, identifier: str, at: float) -> tuple[str, str, float]:
    """Mark the order paid at `at`; returns the order, the outcome and when the payment began."""
    from models.errors import OrderError
    from models.status import OrderStatus
    from models.transitions import change_status, load_order

    time.sleep(max(0.0, at - time.time()))
    began = time.time()
    try:
        with db() as session, session.begin():  # type: ignore[operator]
            change_status(session, load_order(session, identifier), OrderStatus.COMPLETED, by="payments@bench")
        return identifier, "paid", began
    except OrderError as exc:
        return identifier, f"refused: {type(exc).__name__}", began


def buy_freed_tickets(db: object, seed: object, stop: threading.Event, n: int) -> None:
    """A new buyer trying every 50 ms: succeeds only when an expiry freed a ticket."""
    from models.errors import SoldOut
    from models.placing import LineItem, create_order
    from models.users import get_or_create_user

    while not stop.wait(0.05):
        try:
            with db() as session, session.begin():  # type: ignore[operator]
                buyer = get_or_create_user(session, f"late{n}@bench.example")
                create_order(session, event_id=seed.event_id, buyer=buyer,  # type: ignore[attr-defined]
                             items=[LineItem(seed.ticket_id, 1)])  # type: ignore[attr-defined]
        except SoldOut:
            continue


def held_tickets(h: Harness, ticket_id: int) -> int:
    from models.base import utcnow
    from models.db import get_sessionmaker
    from models.events import TicketType
    from models.placing import available

    with get_sessionmaker(h.database_url)() as session:
        ticket = session.get_one(TicketType, ticket_id)
        return ticket.quantity - available(session, ticket, utcnow())


def judge(h: Harness, orders: list[str], outcomes: Counter[str], peaks: list[int], count: int,
          ticket_id: int) -> tuple[list[Row], list[str]]:
    import sqlalchemy as sa

    from models import Order, OrderEvent
    from models.db import get_sessionmaker

    with get_sessionmaker(h.database_url)() as session:
        # A payment leaves a 'completed' audit row and completed_at; an expiry sets expired_at (and may
        # leave an 'expired' audit row): any order with marks of both was moved twice.
        events = session.execute(
            sa.select(Order.identifier, OrderEvent.kind).join(OrderEvent, OrderEvent.order_id == Order.id)
            .where(Order.identifier.in_(orders), OrderEvent.kind.in_(["completed", "expired"]))).all()
        stamps = session.execute(sa.select(Order.identifier, Order.completed_at, Order.expired_at)
                                 .where(Order.identifier.in_(orders))).all()
        mine = sa.select(Order.status).where(Order.identifier.in_(orders))
        statuses = Counter(s.value for s in session.scalars(mine))
        newcomers = session.scalar(sa.select(sa.func.count()).select_from(Order).where(Order.identifier.not_in(orders)))
    marks: dict[str, set[str]] = {}
    for identifier, kind in events:
        marks.setdefault(identifier, set()).add(kind)
    for identifier, completed_at, expired_at in stamps:
        if completed_at is not None:
            marks.setdefault(identifier, set()).add("completed")
        if expired_at is not None:
            marks.setdefault(identifier, set()).add("expired")
    both = sum(1 for k in marks.values() if k == {"completed", "expired"})
    twice = len(events) - len(set(events))
    unresolved = count - statuses["completed"] - statuses["expired"]
    consistent = outcomes["paid"] == statuses["completed"]
    peak = max(peaks or [held_tickets(h, ticket_id)])
    final = held_tickets(h, ticket_id)
    rows = [
        Row("R4", f"races: {outcomes['paid']} paid first, {count - outcomes['paid']} expired first",
            f"{statuses['completed']} completed / {statuses['expired']} expired / {unresolved} other",
            "every order exactly one", unresolved == 0 and consistent),
        Row("R4", "orders both completed and expired (audit rows, completed_at, expired_at)", str(both), "0",
            both == 0 and twice == 0),
        Row("R4", f"tickets held, peak / end (capacity {count}); {newcomers} freed tickets resold",
            f"{peak} / {final}", f"<= {count}", peak <= count and final <= count),
    ]
    notes = [f"R4: two `celery -A worker beat` processes that both sweep (file schedules, not redbeat's single "
             f"lock) with EXPIRY_SWEEP_SECONDS={SWEEP} and one worker on the "
             f"`orders` queue; {count} pending 1-ticket orders (capacity {count}: every ticket held) with deadlines "
             f"spread over {SPREAD:.0f} s; each payment (`change_status` to completed, {PAYERS} processes x {THREADS} "
             "threads) is planned within "
             f"±{JITTER} s of its deadline; two buyers try to buy a ticket every 50 ms, which only an expiry can "
             f"free. Payment outcomes: {dict(outcomes)}. Held tickets sampled every 0.5 s."]
    return rows, notes
