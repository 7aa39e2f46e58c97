"""Tracing for real: marking an order paid is ONE trace, from the API's PATCH through the job it wrote
(sent from the API's sender thread), the worker's run, the invoice's render and the payment-received
email's SMTP send. The API and a Celery worker run as processes of their own, on a database and a Redis
of the test's own, exporting over OTLP/HTTP to a receiver the test runs (tests/otlp_receiver.py)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.api.test_processes import ApiProcess
from tests.backends import CeleryWorker, database_url_of
from tests.otlp_receiver import ReceivedSpan, SpanCollector
from tests.waiting import wait_until

FORM = {"payment_mode": "bank", "buyer": {"name": "Ada Buyer", "email": "ada@example.org"},
        "attendees": [{"name": "Ada Buyer", "email": "ada@example.org"}]}


@pytest.fixture
def collector() -> Iterator[SpanCollector]:
    receiver = SpanCollector().start()
    yield receiver
    receiver.stop()


def _world(db: sessionmaker[Session]) -> tuple[int, int, dict[str, str], dict[str, str]]:
    """An event that names its seller (so a paid order gets an invoice); its ticket; buyer's and owner's headers."""
    from models.events import TicketType
    from models.users import create_user_token
    from tests.factories import make_event, make_user

    with db() as session, session.begin():
        owner = make_user(session, "owner@example.org")
        event = make_event(session, owner=owner, tickets=(("Standard", "25.00", 100),))
        event.seller_name, event.seller_vat_id, event.tax_rate = "PyCon e.V.", "DE136695976", Decimal("19")
        event.bank_details, event.contact_email = "PyCon e.V.\nIBAN DE89 3704 0044 0532 0130 00", "t@pycon.example"
        session.flush()
        ticket = session.scalars(sa.select(TicketType.id).where(TicketType.event_id == event.id)).one()
        headers = [{"Authorization": f"Bearer {create_user_token(session, email)[1]}"}
                   for email in ("ada@example.org", "owner@example.org")]
        return event.id, ticket, headers[0], headers[1]


def _sent(db: sessionmaker[Session], identifier: str, kind: str) -> bool:
    from models.deliveries import DeliveryState, EmailDelivery
    from models.orders import Order

    with db() as session:
        states = session.scalars(sa.select(EmailDelivery.state).join(Order, Order.id == EmailDelivery.order_id)
                                 .where(Order.identifier == identifier, EmailDelivery.kind == kind)).all()
    return bool(states) and all(state is DeliveryState.SENT for state in states)


def _chain(spans: list[ReceivedSpan], leaf: ReceivedSpan) -> list[ReceivedSpan] | None:
    """The leaf and its ancestors up to the root, or None while one of them has not arrived yet."""
    by_id = {s.span_id: s for s in spans if s.trace_id == leaf.trace_id}
    chain = [leaf]
    while chain[-1].parent_id:
        parent = by_id.get(chain[-1].parent_id)
        if parent is None:
            return None
        chain.append(parent)
    return chain


@pytest.mark.slow(8)
def test_marking_an_order_paid_is_one_trace_down_to_the_last_emails_smtp_send(
        own_database: sessionmaker[Session], collector: SpanCollector, tmp_path: Path, smtp: Any) -> None:
    from core.jobs import PAYMENT_RECEIVED_TASK
    from models.outbox import OutboxJob
    from ticketq.embedded import EmbeddedRedis

    db = own_database
    redis_server = EmbeddedRedis(tmp_path / "own-redis").start()
    # A short batch delay: the spans arrive soon after the work, and the test waits for them.
    env = {"DATABASE_URL": database_url_of(db), "REDIS_URL": redis_server.url,
           "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    worker = CeleryWorker(tmp_path / "worker.log", env=env)
    api = ApiProcess(tmp_path / "api.log", **env)
    try:
        worker.start()
        api.start()
        event, ticket, buyer, owner = _world(db)
        created = httpx.post(f"{api.url}/v1/orders", headers=buyer, timeout=30,
                             json={"event": event, "tickets": [{"ticket": ticket, "quantity": 1}]})
        assert created.status_code == 201, created.text
        identifier = created.json()["identifier"]
        url = f"{api.url}/v1/orders/{identifier}"
        assert httpx.patch(url, json=FORM, headers=buyer, timeout=30).json()["status"] == "placed"
        wait_until(lambda: _sent(db, identifier, "confirmation-buyer"), 120, "the placed order's confirmation")

        paid = httpx.patch(url, json={"status": "completed"}, headers=owner, timeout=30)
        assert paid.status_code == 200 and paid.json()["status"] == "completed", paid.text
        wait_until(lambda: _sent(db, identifier, "payment-received"), 120, "the payment-received email")

        with db() as session:
            job = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == PAYMENT_RECEIVED_TASK)).one()
        assert job.trace_context is not None
        trace_id = job.trace_context.split("-")[1]  # version-traceid-spanid-flags

        def whole_trace() -> list[ReceivedSpan] | None:
            spans = collector.received()
            for span in spans:
                if (span.trace_id == trace_id and span.name == "smtp send"
                        and span.attributes.get("ticketq.email.kind") == "payment-received"):
                    return _chain(spans, span)
            return None

        chain = wait_until(whole_trace, 60, lambda: f"the SMTP send's trace; got {collector.received()}")
    finally:
        api.stop()
        worker.stop()
        redis_server.stop()

    root = chain[-1]
    assert (root.service, root.name) == ("ticketq-api", "PATCH /v1/orders/{identifier}")
    names = [(s.service, s.name) for s in chain]
    assert ("ticketq-api", f"apply_async/{PAYMENT_RECEIVED_TASK}") in names  # sent from the sender thread
    assert ("ticketq-worker", f"run/{PAYMENT_RECEIVED_TASK}") in names
    smtp_send = chain[0]
    assert smtp_send.service == "ticketq-worker"
    assert smtp_send.attributes["ticketq.order"] == identifier
    assert smtp_send.attributes["ticketq.smtp.outcome"] == "sent"

    in_trace = [s for s in collector.received() if s.trace_id == trace_id]
    renders = [s for s in in_trace if s.name == "render invoice"]
    assert [(r.attributes["ticketq.order"], r.attributes["ticketq.document.kind"]) for r in renders] == \
        [(identifier, "invoice")]
    run = next(s for s in chain if s.name == f"run/{PAYMENT_RECEIVED_TASK}")
    assert _chain(in_trace, renders[0]) is not None and run in (_chain(in_trace, renders[0]) or [])
    # The statements of both processes are in it too (the SQLAlchemy instrumentation).
    assert {s.service for s in in_trace if "db.system" in s.attributes or "db.system.name" in s.attributes} == \
        {"ticketq-api", "ticketq-worker"}
    # ticketq's own spans name orders and kinds, never a person's address.
    for span in in_trace:
        if span.name in ("render invoice", "render order", "smtp send"):
            assert not any("@" in str(value) for value in span.attributes.values()), span
