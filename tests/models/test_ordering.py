"""Orders through the database: creation, submission, organizer moves, refusals that change nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.settings import settings
from models import Order, OrderEvent, OutboxJob
from models.base import utcnow
from models.errors import Forbidden, InvalidInput, InvalidTransition, NotFound, SoldOut, UnknownPaymentMode
from models.placing import LineItem, Person, create_order, submit_order
from models.status import OrderStatus
from models.transitions import change_status, load_order
from tests.factories import make_event, make_order, make_user

S = OrderStatus
BUYER = Person("Ada Buyer", "ada@example.org")


def snapshot(session: Session) -> list[Any]:
    """Everything an order operation may touch, to prove a refusal changed nothing."""
    session.expire_all()
    rows: list[Any] = []
    for model in (Order, OrderEvent, OutboxJob):
        rows.append([tuple(r) for r in session.execute(sa.select(*model.__table__.columns)).all()])
    return rows


def test_a_new_order_is_initializing_and_holds_its_tickets_for_the_window(any_db: sessionmaker[Session]) -> None:
    with any_db() as session, session.begin():
        event = make_event(session)
        now = utcnow()
        order = make_order(session, event, make_user(session), quantity=3, now=now)
        assert order.status is S.INITIALIZING and order.color == "yellow"
        assert order.expires_at == now + timedelta(seconds=settings.order_initializing_ttl_seconds)
        assert order.amount == Decimal("75.00") and len(order.attendees) == 3
        assert len(order.identifier) == 32 and len({a.secret for a in order.attendees}) == 3


@pytest.mark.parametrize(("mode", "status", "jobs"), [
    ("bank", S.PLACED, ["orders.confirm"]),
    ("onsite", S.PLACED, ["orders.confirm"]),
    ("stripe", S.PENDING, []),
])
def test_submitting_sets_the_status_from_the_payment_mode(
    any_db: sessionmaker[Session], mode: str, status: OrderStatus, jobs: list[str]
) -> None:
    with any_db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session), quantity=2)
        submit_order(session, order, payment_mode=mode, buyer=BUYER,
                     attendees=[BUYER, Person("Bo", "bo@example.org")])
        assert order.status is status and order.buyer_email == BUYER.email
        assert [a.name for a in order.attendees] == ["Ada Buyer", "Bo"]
        assert session.scalars(sa.select(OutboxJob.task)).all() == jobs
        if status is S.PENDING:
            assert order.expires_at is not None
            assert order.expires_at > utcnow() + timedelta(seconds=settings.order_pending_ttl_seconds - 60)
        else:
            assert order.expires_at is None


def test_free_completes_a_free_order_and_queues_its_confirmation(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        event = make_event(session, tickets=(("Community", "0.00", 10),))
        order = make_order(session, event, make_user(session))
        submit_order(session, order, payment_mode="free", buyer=BUYER, attendees=[BUYER])
        assert order.status is S.COMPLETED and order.completed_at is not None
        assert session.scalars(sa.select(OutboxJob.args)).all() == [[order.identifier]]


def test_bad_submissions_are_refused_and_change_nothing(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session))
        identifier = order.identifier
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"payment_mode": "free"}, InvalidTransition, "only allowed for orders with a zero total"),
        ({"payment_mode": "bitcoin"}, UnknownPaymentMode, "Unknown payment mode 'bitcoin'"),
        ({"payment_mode": "bank", "attendees": []}, InvalidInput, "Expected 1 attendees, one per ticket, got 0"),
    ]
    with db() as session:
        before = snapshot(session)
    for overrides, error, text in cases:
        kwargs: dict[str, Any] = {"payment_mode": "bank", "buyer": BUYER, "attendees": [BUYER], **overrides}
        with db() as session, pytest.raises(error, match=text), session.begin():
            submit_order(session, load_order(session, identifier), **kwargs)
    with db() as session:
        assert snapshot(session) == before


@pytest.mark.parametrize("settled", [S.PLACED, S.COMPLETED])
def test_the_buyer_cannot_update_a_settled_order(db: sessionmaker[Session], settled: OrderStatus) -> None:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session), status=settled)
    with db() as session, session.begin(), pytest.raises(Forbidden) as refused:
        submit_order(session, load_order(session, order.identifier), payment_mode="bank", buyer=BUYER,
                     attendees=[BUYER])
    assert refused.value.detail == "You cannot update a non-initialized or non-pending order"
    assert refused.value.code == "forbidden"


def test_an_organizer_marks_pending_and_placed_orders_paid(any_db: sessionmaker[Session]) -> None:
    with any_db() as session, session.begin():
        event, buyer = make_event(session), make_user(session)
        pending = make_order(session, event, buyer, status=S.PENDING)
        placed = make_order(session, event, buyer, status=S.PLACED)
        for order in (pending, placed):
            change_status(session, order, S.COMPLETED, by="org@example.org")
            assert order.status is S.COMPLETED and order.color == "green" and order.expires_at is None
        kinds = session.scalars(sa.select(OrderEvent.kind).where(OrderEvent.order_id == pending.id)).all()
        assert kinds == ["created", "completed"]


@pytest.mark.parametrize("status", [S.INITIALIZING, S.PENDING, S.PLACED, S.COMPLETED])
def test_an_organizer_cancels_any_order_that_is_not_final(db: sessionmaker[Session], status: OrderStatus) -> None:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session), status=status)
        change_status(session, order, S.CANCELLED, by="org@example.org")
        assert order.status is S.CANCELLED and order.cancelled_at is not None
        assert "orders.send_cancellation" in session.scalars(sa.select(OutboxJob.task)).all()


@pytest.mark.parametrize(("status", "target", "text"), [
    (S.EXPIRED, S.CANCELLED, "Order is expired; expired orders cannot change"),
    (S.CANCELLED, S.COMPLETED, "Order is cancelled; cancelled orders cannot change"),
    (S.INITIALIZING, S.COMPLETED, "Cannot change an order from 'initializing' to 'completed'"),
    (S.COMPLETED, S.PENDING, "Cannot change an order from 'completed' to 'pending'"),
])
def test_refused_organizer_moves_say_why_and_change_nothing(
    db: sessionmaker[Session], status: OrderStatus, target: OrderStatus, text: str
) -> None:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session))
        if status is not S.INITIALIZING:
            session.execute(sa.update(Order).values(status=status))
    with db() as session:
        before = snapshot(session)
    with db() as session, session.begin(), pytest.raises(InvalidTransition, match=f"^{text}$"):
        change_status(session, load_order(session, order.identifier), target, by="org@example.org")
    with db() as session:
        assert snapshot(session) == before


def test_a_pending_order_past_its_deadline_cannot_be_paid(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        order = make_order(session, make_event(session), make_user(session), status=S.PENDING)
        later = utcnow() + timedelta(seconds=settings.order_pending_ttl_seconds + 1)
        with pytest.raises(InvalidTransition, match="^Order has expired$"):
            change_status(session, order, S.COMPLETED, by="org@example.org", now=later)


def test_tickets_cannot_be_oversold_and_expired_holds_are_released(any_db: sessionmaker[Session]) -> None:
    with any_db() as session, session.begin():
        event, buyer = make_event(session, tickets=(("Tiny", "5.00", 2),)), make_user(session)
        make_order(session, event, buyer, quantity=2)
        with pytest.raises(SoldOut, match="^Tickets sold out$"):
            make_order(session, event, buyer)
        later = utcnow() + timedelta(seconds=settings.order_initializing_ttl_seconds + 1)
        assert make_order(session, event, buyer, quantity=2, now=later).status is S.INITIALIZING


@pytest.mark.parametrize(("items", "error", "text"), [
    ([], InvalidInput, "An order needs at least one ticket"),
    ([(0, -1)], InvalidInput, "Ticket quantity must be at least 1"),
    ([(0, 0)], InvalidInput, "Ticket quantity must be at least 1"),
    ([(999, 1)], NotFound, "Ticket type not found for this event"),
])
def test_bad_orders_are_refused_and_create_nothing(
    db: sessionmaker[Session], items: list[tuple[int, int]], error: type[Exception], text: str
) -> None:
    with db() as session, session.begin():
        event, buyer = make_event(session), make_user(session)
    with db() as session, session.begin(), pytest.raises(error, match=f"^{text}$"):
        lines = [LineItem(event.ticket_types[0].id if t == 0 else t, q) for t, q in items]
        create_order(session, event_id=event.id, buyer=buyer, items=lines)
    with db() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_an_order_cannot_be_created_expired_or_cancelled(db: sessionmaker[Session]) -> None:
    with db() as session, session.begin():
        event, buyer = make_event(session), make_user(session)
        for status in (S.EXPIRED, S.CANCELLED):
            with pytest.raises(InvalidTransition, match=f"cannot be created as '{status.value}'"):
                make_order(session, event, buyer, status=status)


def test_negative_prices_and_quantities_are_refused_by_the_database(db: sessionmaker[Session]) -> None:
    for tickets in ((("Bad", "-1.00", 5),), (("Bad", "1.00", -5),)):
        with db() as session, pytest.raises(sa.exc.IntegrityError, match="not_negative"), session.begin():
            make_event(session, tickets=tickets)
