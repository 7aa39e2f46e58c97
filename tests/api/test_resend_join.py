"""A resend requested while the order's previous one still waits joins it (the worker's side, five
quick resends through the real worker: tests/e2e/test_void_and_resend.py)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import RESEND_TASK
from models.base import utcnow
from models.orders import Order, OrderEvent
from models.outbox import OutboxJob

URL = "/v1/orders/resend-email"


def resend(client: TestClient, identifier: str, headers: dict[str, str]) -> Any:
    return client.post(URL, json={"data": {"order": identifier}}, headers=headers)


def audit_kinds(db: sessionmaker[Session], identifier: str) -> list[str]:
    with db() as session:
        return list(session.scalars(sa.select(OrderEvent.kind).join(Order).where(
            Order.identifier == identifier, OrderEvent.kind.like("resend-%")).order_by(OrderEvent.id)))


def resend_jobs(db: sessionmaker[Session]) -> list[OutboxJob]:
    with db() as session:
        return list(session.scalars(sa.select(OutboxJob).where(OutboxJob.task == RESEND_TASK).order_by(OutboxJob.id)))


def test_a_resend_joins_only_a_waiting_job(client: TestClient, world: dict[str, Any],
                                           db: sessionmaker[Session]) -> None:
    identifier, coorg = world["orders"]["completed"], world["headers"]["coorg"]
    for _ in range(3):
        assert resend(client, identifier, coorg).status_code == 202
    (job,) = resend_jobs(db)  # queued once
    assert audit_kinds(db, identifier) == ["resend-requested", "resend-joined", "resend-joined"]
    # Another order's resend is its own.
    assert resend(client, world["orders"]["placed"], coorg).status_code == 202
    assert len(resend_jobs(db)) == 2
    # Once that job runs (or ran), the next request is a new resend.
    with db() as session, session.begin():
        session.execute(sa.update(OutboxJob).where(OutboxJob.id == job.id).values(claimed_by="elsewhere:1"))
    assert resend(client, identifier, coorg).status_code == 202
    with db() as session, session.begin():
        session.execute(sa.update(OutboxJob).where(OutboxJob.id == job.id).values(done_at=utcnow()))
    assert resend(client, identifier, coorg).status_code == 202
    assert len(resend_jobs(db)) == 3  # the one made while the first ran is waiting: joined
    assert audit_kinds(db, identifier)[-2:] == ["resend-requested", "resend-joined"]


def test_the_join_holds_on_both_databases(any_db: sessionmaker[Session]) -> None:
    """The one-statement form (PostgreSQL, autocommit) and the transaction (SQLite) decide alike."""
    from models.resending import request_resend
    from models.status import OrderStatus
    from tests.factories import make_event, make_order, make_user

    with any_db() as session, session.begin():
        owner = make_user(session, "owner@example.org")
        order = make_order(session, make_event(session, owner=owner), owner, status=OrderStatus.COMPLETED)
        order_id, identifier = order.id, order.identifier
    engine: sa.Engine = any_db.kw["bind"]
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if engine.dialect.name == "postgresql" else {}
    with engine.connect() as conn:
        conn = conn.execution_options(**options)
        first, second = (request_resend(conn, order_id, identifier, by=by) for by in ("a@example.org", "b@example.org"))
    assert not first.joined and second.joined and second.id == first.id
    with any_db() as session:
        jobs = session.scalars(sa.select(OutboxJob.id).where(OutboxJob.task == RESEND_TASK)).all()
        audit = session.execute(sa.select(OrderEvent.kind, OrderEvent.actor).where(
            OrderEvent.order_id == order_id, OrderEvent.kind.like("resend-%")).order_by(OrderEvent.id)).all()
    assert jobs == [first.id]
    assert [tuple(row) for row in audit] == [("resend-requested", "a@example.org"), ("resend-joined", "b@example.org")]
