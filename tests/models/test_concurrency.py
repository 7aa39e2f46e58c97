"""Many buyers and racing payments against expiry, on real PostgreSQL connections in threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models import Order, OutboxJob
from models.base import utcnow
from models.db import create_engine
from models.errors import OrderError, SoldOut
from models.expiration import expire_stale
from models.history import history
from models.status import OrderStatus
from models.transitions import change_status, load_order
from tests.factories import make_event, make_order, make_user

S = OrderStatus


POOLED: list[sa.Engine] = []  # closed after each test (tests/models/conftest.py)


def pooled(factory: sessionmaker[Session], size: int) -> sessionmaker[Session]:
    """A factory with enough connections for every thread to hold one at once; they are closed when
    the test ends, not left open on a server whose ~100 connections other runs share."""
    engine = create_engine(str(factory.kw["bind"].url.render_as_string(hide_password=False)),
                           pool_size=size, max_overflow=0)
    POOLED.append(engine)
    return sessionmaker(engine, expire_on_commit=False)


def test_fifty_buyers_for_the_last_ten_tickets_exactly_ten_win(any_db: sessionmaker[Session],
                                                               many_connections: None) -> None:
    db = any_db
    with db() as session, session.begin():
        event = make_event(session, tickets=(("Last", "10.00", 10),))
        buyers = [make_user(session, f"buyer{i}@example.org") for i in range(50)]
    # 30 connections for 50 buyers (the rest wait for one and still race for the last tickets): the
    # server's ~100 are shared by the whole run, whose idle pools hold about 35.
    factory = pooled(db, 30)
    start = threading.Barrier(50)

    def buy(buyer_id: int) -> str:
        with factory() as session:
            start.wait()
            try:
                with session.begin():
                    buyer = session.get_one(type(buyers[0]), buyer_id)
                    make_order(session, session.get_one(type(event), event.id), buyer)
                return "ok"
            except SoldOut:
                return "sold out"

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(buy, [b.id for b in buyers]))
    assert results.count("ok") == 10 and results.count("sold out") == 40
    with db() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 10
    factory.kw["bind"].dispose()


def test_a_hundred_payments_racing_expiry_have_exactly_one_winner_each(db: sessionmaker[Session],
                                                                      many_connections: None) -> None:
    """The deadline passes while payments are in flight by construction, not by timing luck: 30
    orders are paid well before it; 10 payments are released together with the moment it passes;
    the last 60 start after it. Four sweepers run throughout: whatever the interleaving, each order
    moves exactly once, and both outcomes happen."""
    with db() as session, session.begin():
        event, buyer = make_event(session, tickets=(("Race", "10.00", 200),)), make_user(session)
        identifiers = [make_order(session, event, buyer, status=S.PENDING).identifier for _ in range(100)]
    with db() as session, session.begin():  # a deadline nobody reaches until the test moves it
        session.execute(sa.update(Order).values(expires_at=utcnow() + timedelta(hours=1)))
    factory = pooled(db, 16)  # 4 sweepers, 10 payers, the mover, the watcher: a shared server has ~100
    went_through, deadline_passed, stop = threading.Semaphore(0), threading.Event(), threading.Event()
    at_deadline = threading.Barrier(10 + 1, timeout=60)  # payments 30-39 and the deadline itself

    def sweep() -> int:
        swept = 0
        while not stop.is_set():
            swept += sum(expire_stale(factory).values())
        return swept

    def pay(index_and_identifier: tuple[int, str]) -> str:
        index, identifier = index_and_identifier
        if 30 <= index < 40:
            at_deadline.wait()
        elif index >= 40:
            assert deadline_passed.wait(60), "the deadline was never moved"
        with factory() as session:
            try:
                with session.begin():
                    change_status(session, load_order(session, identifier), S.COMPLETED, by="payment")
            except OrderError:
                return "refused"
        went_through.release()
        return "paid"

    def pass_deadline() -> None:
        for _ in range(30):
            assert went_through.acquire(timeout=60), "the payments before the deadline did not go through"
        at_deadline.wait()
        with factory() as session, session.begin():
            session.execute(sa.update(Order).where(Order.status == S.PENDING).values(expires_at=utcnow()))
        deadline_passed.set()

    with ThreadPoolExecutor(5) as pool, ThreadPoolExecutor(10) as payers:
        sweepers = [pool.submit(sweep) for _ in range(4)]  # four beats at once
        mover = pool.submit(pass_deadline)
        try:
            outcomes = list(payers.map(pay, enumerate(identifiers)))
            mover.result()
            for _ in range(600):  # the sweepers' observable end: no order left pending
                with factory() as session:
                    if not session.scalar(sa.select(sa.func.count()).where(Order.status == S.PENDING)):
                        break
                time.sleep(0.05)
        finally:
            stop.set()
        swept = sum(s.result() for s in sweepers)
    factory.kw["bind"].dispose()

    with db() as session:
        final = {i: s for i, s in session.execute(sa.select(Order.identifier, Order.status))}
        terminal = [[h.kind for h in history(o) if h.kind in ("completed", "expired")]
                    for o in session.scalars(sa.select(Order))]
        both = session.scalar(sa.select(sa.func.count()).where(Order.completed_at.is_not(None),
                                                              Order.expired_at.is_not(None)))
        confirms = session.scalar(sa.select(sa.func.count()).select_from(OutboxJob))
    paid = outcomes.count("paid")
    assert set(final.values()) <= {S.COMPLETED, S.EXPIRED}
    assert sum(1 for s in final.values() if s is S.COMPLETED) == paid == confirms
    assert sum(1 for s in final.values() if s is S.EXPIRED) == swept == 100 - paid
    assert len(terminal) == 100 and all(len(kinds) == 1 for kinds in terminal) and both == 0
    assert 30 <= paid <= 40, f"paid={paid}: 30 before the deadline, none of the 60 started after it"
