"""A payment racing beat's expiry sweep at the deadline, through the API and the real worker: every
order has exactly one winner, the loser changes nothing, and only a paid order gets its confirmation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK, EXPIRE_TASK
from models.base import utcnow
from models.orders import Order
from models.outbox import OutboxJob
from models.placing import Person, submit_order
from tests.backends import Backends, CeleryWorker
from tests.e2e.test_void_and_resend import api, token
from tests.factories import make_event, make_order, make_user
from tests.waiting import wait_until
from worker import app

BUYER = "racer@example.org"
# Deadlines from 0.5 s before the payment to 1.5 s after it: the first ones must expire, the last must
# be paid, and the ones in between race the sweep, which the worker runs back to back meanwhile.
OFFSETS_MS = range(-500, 1600, 100)


def pending_orders(db: sessionmaker[Session], count: int) -> list[str]:
    with db() as session, session.begin():
        event = make_event(session, owner=make_user(session, "owner@example.org"))
        buyer = make_user(session, BUYER)
        identifiers = []
        for _ in range(count):
            order = make_order(session, event, buyer)
            submit_order(session, order, payment_mode="card", buyer=Person("Racer", BUYER),
                         attendees=[Person("Racer", BUYER)], by=BUYER)  # online: pending until paid
            identifiers.append(order.identifier)
    return identifiers


@pytest.mark.slow(7)
def test_a_payment_at_the_deadline_races_the_sweep_and_one_wins(
        backends: Backends, db: sessionmaker[Session], celery_worker: CeleryWorker) -> None:
    identifiers = pending_orders(db, len(OFFSETS_MS))
    owner = token(db, "owner@example.org")
    stop, sweeps = threading.Event(), []

    def sweep_until_stopped() -> None:
        while not stop.is_set():
            sweeps.append(app.send_task(EXPIRE_TASK, queue="orders").get(timeout=60))

    sweeper = threading.Thread(target=sweep_until_stopped)
    sweeper.start()
    answers, deadlines = {}, {}
    try:
        with api(backends) as client:
            for identifier, offset in zip(identifiers, OFFSETS_MS, strict=True):
                deadlines[identifier] = utcnow() + timedelta(milliseconds=offset)
                with db() as session, session.begin():
                    session.execute(sa.update(Order).where(Order.identifier == identifier)
                                    .values(expires_at=deadlines[identifier]))
                answers[identifier] = client.patch(f"/v1/orders/{identifier}", json={"status": "completed"},
                                                   headers=owner).status_code
    finally:
        stop.set()
        sweeper.join(90)
    # Every deadline passed: one more sweep takes whatever the payments did not.
    wait_until(lambda: utcnow() > max(deadlines.values()), 10, "the last deadline")
    app.send_task(EXPIRE_TASK, queue="orders").get(timeout=60)
    assert sweeps, "the worker swept during the payments"
    with db() as session:
        status = {o.identifier: o.status.value for o in session.scalars(
            sa.select(Order).where(Order.identifier.in_(identifiers)))}
        confirmations = [j.args[0] for j in session.scalars(sa.select(OutboxJob).where(OutboxJob.task == CONFIRM_TASK))]
    for identifier in identifiers:
        paid = answers[identifier] == 200
        assert status[identifier] == ("completed" if paid else "expired"), (identifier, answers[identifier])
        assert confirmations.count(identifier) == (1 if paid else 0), identifier
        assert paid or answers[identifier] in (409, 422), answers[identifier]
    won = [answers[i] == 200 for i in identifiers]
    assert not won[0] and won[-1], won  # the construction straddles the deadline
