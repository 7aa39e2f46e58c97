"""Orders for the scripts: an event with an owner, pending orders of 2 attendees, and completing them
the way the API does (commit, then publish the outbox jobs). Import only after `Harness.start()`."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from bench.servers import Accepted
from models import Event, EventRole, Role, TicketType
from models.db import get_sessionmaker
from models.outbox import pending_job_ids
from models.placing import LineItem, Person, create_order, submit_order
from models.status import OrderStatus
from models.transitions import change_status, load_order
from models.users import create_user_token, get_or_create_user
from tasks.outbox_relay import publish_jobs

ORGANIZER = "owner@bench.example"
EMAILS_PER_ORDER = 3  # buyer, the second attendee, the owner


@dataclass(frozen=True)
class Seed:
    event_id: int
    ticket_id: int
    token: str  # the owner's API token (co-organizer of the event)


def factory(url: str) -> sessionmaker[Session]:
    return get_sessionmaker(url)


def seed_event(db: sessionmaker[Session], quantity: int = 1_000_000, *, price: str = "25.00",
               name: str = "Bench Conf") -> Seed:
    from datetime import UTC, datetime, timedelta

    with db() as session, session.begin():
        owner, token = create_user_token(session, ORGANIZER, name="Bench Owner")
        start = datetime(2027, 5, 1, 9, 0, tzinfo=UTC)
        event = Event(name=name, starts_at=start, ends_at=start + timedelta(hours=8),
                      timezone="Europe/Berlin", location="Berlin", currency="EUR")
        event.ticket_types.append(TicketType(name="Standard", price=Decimal(price), quantity=quantity))
        session.add(event)
        session.flush()
        session.add(EventRole(event_id=event.id, user_id=owner.id, role=Role.OWNER))
        return Seed(event.id, event.ticket_types[0].id, token)


def buyer_address(n: int, domain: str = "bench.example") -> str:
    return f"buyer{n}@{domain}"


def make_pending(db: sessionmaker[Session], seed: Seed, count: int, *, first: int = 0, tickets: int = 2,
                 guest: str | None = None, locale: str | None = None) -> list[str]:
    """`count` pending orders of `tickets` attendees: the buyer attends, plus one distinct guest; in
    the event's language unless `locale` is given."""
    identifiers = []
    for n in range(first, first + count):
        with db() as session, session.begin():
            buyer = get_or_create_user(session, buyer_address(n), name=f"Buyer {n}")
            order = create_order(session, event_id=seed.event_id, buyer=buyer,
                                 items=[LineItem(seed.ticket_id, tickets)], locale=locale)
            people = [Person(f"Buyer {n}", buyer.email)] + [
                Person(f"Guest {n}.{i}", guest or f"guest{n}.{i}@bench.example") for i in range(1, tickets)]
            submit_order(session, order, payment_mode="card", buyer=people[0], attendees=people)
            identifiers.append(order.identifier)
    return identifiers


def complete(db: sessionmaker[Session], identifier: str) -> float:
    """Mark one order paid as its organizer would, publish its confirm job; return the commit time."""
    with db() as session:
        with session.begin():
            order = load_order(session, identifier)
            change_status(session, order, OrderStatus.COMPLETED, by=ORGANIZER)
            jobs = pending_job_ids(session)
        committed = time.time()
    publish_jobs(db, jobs)
    return committed


def complete_all(db: sessionmaker[Session], identifiers: Iterable[str]) -> dict[str, float]:
    return {identifier: complete(db, identifier) for identifier in identifiers}


def wait_for_emails(sink_snapshot: object, orders: Sequence[str], timeout: float, per_order: int = EMAILS_PER_ORDER,
                    progress: object = None) -> list[Accepted]:
    """Poll the sink until every order has its emails (by kind) or the timeout passes."""
    wanted = set(orders)
    deadline = time.monotonic() + timeout
    while True:
        got = sink_snapshot()  # type: ignore[operator]
        done = complete_orders(got, wanted, per_order)
        if progress is not None:
            progress(len(done), len(wanted))  # type: ignore[operator]
        if len(done) >= len(wanted) or time.monotonic() > deadline:
            return list(got)
        time.sleep(0.2)


def complete_orders(accepted: Iterable[Accepted], wanted: set[str], per_order: int = EMAILS_PER_ORDER) -> set[str]:
    kinds: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for a in accepted:
        if a.order in wanted:
            kinds.setdefault(a.order, set()).add((a.kind, a.recipients))
    return {o for o, k in kinds.items() if len(k) >= per_order}


def duplicates(accepted: Iterable[Accepted]) -> tuple[int, int]:
    """(copies beyond the first by Message-ID, copies beyond the first by order+kind+recipient)."""
    accepted = list(accepted)
    by_id = Counter(a.message_id for a in accepted)
    by_logical = Counter((a.order, a.kind, a.recipients) for a in accepted)
    return sum(n - 1 for n in by_id.values()), sum(n - 1 for n in by_logical.values())


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, round(q) - 1))] if q < 100 \
        else max(values)
