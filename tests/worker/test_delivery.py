"""One delivery record against the real database and SMTP sink (no Celery): states, claims, reuse."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from tests.tasks.confirm_helpers import BUYER, SHARED, confirmed_order, deliveries
from ticketq.embedded import SmtpSink
from ticketq.settings import settings
from worker.delivery import ADVISORY_CLASS, Outcome, send_deliveries, send_delivery
from worker.mail import close_clients, smtp_client
from worker.pipeline import ensure_documents, plan_cancellation, plan_confirmation, plan_resend, prepare_batch


@pytest.fixture(autouse=True)
def fresh_smtp_clients() -> Iterator[None]:
    close_clients()
    yield
    close_clients()


def send(factory: sessionmaker[Session], delivery_id: int, final: bool = False) -> Outcome:
    assert settings.smtp_url
    return send_delivery(factory, delivery_id, settings.smtp_url, final=final)


def test_confirmation_plan_is_recorded_once_and_waits_for_documents(any_db: sessionmaker[Session]) -> None:
    identifier = confirmed_order(any_db)
    first, second = plan_confirmation(any_db, identifier), plan_confirmation(any_db, identifier)
    rows = deliveries(any_db, identifier)
    assert {(r.kind, r.recipient) for r in rows} == {(EmailKind.CONFIRMATION_BUYER, BUYER),
        (EmailKind.CONFIRMATION_ATTENDEE, SHARED), (EmailKind.ORGANIZER_NOTIFICATION, "owner@example.org")}
    assert first == second and first.needs_documents and first.pending == [r.id for r in rows]
    assert prepare_batch(any_db, identifier, "confirmation") == (True, first.pending)
    assert prepare_batch(any_db, identifier, "confirmation") == (False, first.pending)
    assert ensure_documents(any_db, identifier) is False


def test_sending_twice_sends_once_on_both_databases(any_db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(any_db)
    ensure_documents(any_db, identifier)
    plan = plan_confirmation(any_db, identifier)
    assert send_deliveries(any_db, plan.pending, settings.smtp_url or "") == {i: Outcome.SENT for i in plan.pending}
    assert [send(any_db, d) for d in plan.pending] == [Outcome.DONE] * 3
    assert len(smtp.messages) == 3
    resend = plan_resend(any_db, identifier, "owner@example.org", "job-1")
    assert plan_resend(any_db, identifier, "owner@example.org", "job-1").batch == resend.batch == "resend-1"
    assert plan_resend(any_db, identifier, None, "job-2").batch == "resend-2"
    assert plan_cancellation(any_db, identifier).batch == "cancellation"


def test_a_sending_row_left_by_a_dead_worker_is_sent_again_but_a_live_claim_is_skipped(
    db: sessionmaker[Session], smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db)
    ensure_documents(db, identifier)
    buyer, *_ = plan_confirmation(db, identifier).pending
    with db() as session, session.begin():  # a worker died after marking it 'sending'
        session.execute(sa.update(EmailDelivery).where(EmailDelivery.id == buyer)
                        .values(state=DeliveryState.SENDING, attempts=1, message_id="<dead@example.org>"))
    with db() as session, session.begin():  # a live worker holds the claim
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_CLASS, buyer)))
        assert send(db, buyer) is Outcome.BUSY
    assert send(db, buyer) is Outcome.SENT
    [row] = [r for r in deliveries(db, identifier) if r.id == buyer]
    assert (row.state, row.attempts, row.message_id) == (DeliveryState.SENT, 2, "<dead@example.org>")
    assert [str(m["Message-ID"]) for m in smtp.messages] == ["<dead@example.org>"]


def test_a_temporary_failure_requeues_and_the_last_attempt_fails(db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(db)
    [cancel] = plan_cancellation(db, identifier).pending
    smtp.script_replies("421 4.7.0 busy", "421 4.7.0 busy")
    assert send(db, cancel) is Outcome.RETRY
    [row] = deliveries(db, identifier)
    assert (row.state, row.last_error) == (DeliveryState.QUEUED, "421 4.7.0 busy")
    assert send(db, cancel, final=True) is Outcome.FAILED
    [row] = deliveries(db, identifier)
    assert (row.state, row.attempts, row.last_error) == (DeliveryState.FAILED, 2, "421 4.7.0 busy")


def test_the_smtp_connection_is_reused_and_reopened_when_dropped(db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(db)
    ensure_documents(db, identifier)
    first, second, third = plan_confirmation(db, identifier).pending
    client = smtp_client(settings.smtp_url or "")
    send(db, first)
    connection = client.connection
    send(db, second)
    assert connection is not None and client.connection is connection
    connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]  # the server or network dropped it
    assert send(db, third) is Outcome.SENT
    assert client.connection is not connection and len(smtp.messages) == 3


def test_a_refused_connection_is_temporary(db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    identifier = confirmed_order(db)
    [cancel] = plan_cancellation(db, identifier).pending
    outcome = send_delivery(db, cancel, "smtp://127.0.0.1:1", final=False)
    assert outcome is Outcome.RETRY
    [row] = deliveries(db, identifier)
    assert row.state is DeliveryState.QUEUED and "Connection" in (row.last_error or "")


def test_a_batch_sends_each_record_independently(db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(db)
    ensure_documents(db, identifier)
    buyer, attendee, organizer = plan_confirmation(db, identifier).pending
    smtp.refuse[SHARED] = "550 5.1.1 no such user"
    with db() as session, session.begin():  # a live duplicate job is sending the organizer's email
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_CLASS, organizer)))
        outcomes = send_deliveries(db, [buyer, attendee, organizer, 999_999], settings.smtp_url or "")
    assert outcomes == {buyer: Outcome.SENT, attendee: Outcome.FAILED, organizer: Outcome.BUSY,
                        999_999: Outcome.DONE}
    assert [m["X-Email-Kind"] for m in smtp.messages] == ["confirmation-buyer"]
    assert send_deliveries(db, [buyer, attendee, organizer], settings.smtp_url or "") == {
        buyer: Outcome.DONE, attendee: Outcome.DONE, organizer: Outcome.SENT}
