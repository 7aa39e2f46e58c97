"""Expiry: at the deadline and not before, set-based, idempotent, safe beside a second sweeper."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.settings import settings
from models import Order
from models.base import utcnow
from models.expiration import expire_stale
from models.history import history
from models.status import OrderStatus
from tests.factories import make_event, make_order, make_user

S = OrderStatus


def seed(factory: sessionmaker[Session]) -> dict[str, Order]:
    with factory() as session, session.begin():
        event, buyer = make_event(session), make_user(session)
        orders = {s.value: make_order(session, event, buyer, status=s) for s in
                  (S.INITIALIZING, S.PENDING, S.PLACED, S.COMPLETED)}
    return orders


def statuses(factory: sessionmaker[Session]) -> dict[str, str]:
    with factory() as session:
        return {o.identifier: o.status.value for o in session.scalars(sa.select(Order))}


def test_nothing_expires_before_its_deadline(any_db: sessionmaker[Session]) -> None:
    orders = seed(any_db)
    before = statuses(any_db)
    just_before = orders["initializing"].expires_at - timedelta(milliseconds=1)  # type: ignore[operator]
    assert expire_stale(any_db, now=just_before) == {"initializing": 0, "pending": 0}
    assert statuses(any_db) == before


def test_each_held_status_expires_at_its_own_deadline(any_db: sessionmaker[Session]) -> None:
    orders = seed(any_db)
    init_deadline = orders["initializing"].expires_at
    pending_deadline = orders["pending"].expires_at
    assert init_deadline and pending_deadline
    assert pending_deadline - init_deadline >= timedelta(
        seconds=settings.order_pending_ttl_seconds - settings.order_initializing_ttl_seconds - 5)

    assert expire_stale(any_db, now=init_deadline) == {"initializing": 1, "pending": 0}
    assert expire_stale(any_db, now=pending_deadline) == {"initializing": 0, "pending": 1}
    after = statuses(any_db)
    assert after[orders["initializing"].identifier] == "expired"
    assert after[orders["pending"].identifier] == "expired"
    assert after[orders["placed"].identifier] == "placed"
    assert after[orders["completed"].identifier] == "completed"


def test_a_second_sweep_changes_nothing_and_the_history_shows_one_expiry(any_db: sessionmaker[Session]) -> None:
    seed(any_db)
    far = utcnow() + timedelta(days=1)
    assert expire_stale(any_db, now=far) == {"initializing": 1, "pending": 1}
    assert expire_stale(any_db, now=far) == {"initializing": 0, "pending": 0}
    with any_db() as session:
        for order in session.scalars(sa.select(Order).where(Order.status == S.EXPIRED)):
            assert [h.kind for h in history(order)] == ["created", "expired"]
            assert history(order)[-1].at == far


def test_large_backlogs_are_expired_in_batches(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        event, buyer = make_event(session, tickets=(("Many", "1.00", 1000),)), make_user(session)
        for _ in range(25):
            make_order(session, event, buyer)
    counts = expire_stale(db, now=utcnow() + timedelta(days=1), batch_size=10)
    assert counts == {"initializing": 25, "pending": 0}


def test_expired_orders_release_their_tickets(db: sessionmaker[Session]) -> None:
    from models.placing import available

    with db() as session, session.begin():
        event, buyer = make_event(session, tickets=(("Few", "1.00", 3),)), make_user(session)
        make_order(session, event, buyer, quantity=3)
        assert available(session, event.ticket_types[0]) == 0
    expire_stale(db, now=utcnow() + timedelta(days=1))
    with db() as session:
        assert available(session, session.merge(event).ticket_types[0]) == 3


def test_paying_exactly_at_the_deadline_is_too_late_and_the_sweep_takes_it(any_db: sessionmaker[Session]) -> None:
    """One instant, one owner: a payment needs expires_at > now, the sweep takes expires_at <= now, so
    at the deadline itself the sweep wins and the payment is refused, whichever comes first."""
    from models.errors import InvalidTransition
    from models.transitions import change_status, load_order

    orders = seed(any_db)
    deadline = orders["pending"].expires_at
    assert deadline is not None
    with any_db() as session, session.begin():
        order = load_order(session, orders["pending"].identifier, lock=True)
        with pytest.raises(InvalidTransition, match="Order has expired"):
            change_status(session, order, S.COMPLETED, by="owner@example.org", now=deadline)
    with any_db() as session, session.begin():  # a millisecond earlier it would have been paid
        order = load_order(session, orders["pending"].identifier, lock=True)
        change_status(session, order, S.COMPLETED, by="owner@example.org", now=deadline - timedelta(milliseconds=1))
        session.rollback()
    assert expire_stale(any_db, now=deadline)["pending"] == 1
    assert statuses(any_db)[orders["pending"].identifier] == "expired"
