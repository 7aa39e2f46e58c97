"""Delivery records against the real database and SMTP sink (no Celery): states, claims, reuse, retries."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import SEND_DELIVERY_TASK
from core.settings import settings
from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from models.orders import Order
from models.outbox import OutboxJob
from services import pipeline
from services.claims import ADVISORY_CLASS, claimed
from services.messages import message_id_for
from services.outcomes import MAX_SEND_ATTEMPTS, Outcome
from services.pipeline import ensure_documents
from services.presenters import load_full_order
from services.recipients import CANCELLATION_BATCH, CONFIRMATION_BATCH, confirmation_recipients, ensure_deliveries
from services.sending import _prepare_all, send_deliveries
from services.smtp import close_clients, smtp_client
from tests.tasks.confirm_helpers import BUYER, SHARED, confirmed_order, deliveries
from ticketq.embedded import SmtpSink


@pytest.fixture(autouse=True)
def fresh_smtp_clients() -> Iterator[None]:
    close_clients()
    yield
    close_clients()


def full_order(factory: sessionmaker[Session], identifier: str) -> Order:
    with factory() as session:
        return load_full_order(session, Order.identifier == identifier)


def planned(factory: sessionmaker[Session], identifier: str, batch: str = CONFIRMATION_BATCH) -> list[int]:
    """Record a batch's emails without sending them (what a job does first)."""
    from services.presenters import buyer_of

    with factory() as session, session.begin():
        order = load_full_order(session, Order.identifier == identifier)
        plan = (confirmation_recipients(session, order, organizers=True) if batch == CONFIRMATION_BATCH
                else [(EmailKind.CANCELLATION, buyer_of(order)[1])])
        return [r.id for r in ensure_deliveries(session, order, batch, plan)]


def send(factory: sessionmaker[Session], delivery_id: int) -> Outcome:
    return pipeline.send_delivery(factory, delivery_id).outcomes[delivery_id]


def send_all(factory: sessionmaker[Session], identifier: str, ids: list[int], url: str | None = None
             ) -> dict[int, Outcome]:
    order = full_order(factory, identifier)
    documents, _ = ensure_documents(factory, order)
    return send_deliveries(factory, order, ids, documents, url or settings.smtp_url or "").outcomes


def sent_for(smtp: SmtpSink, identifier: str) -> list[object]:
    """This order's messages only: a live worker of an earlier test may still send that test's
    payment-received email (its job is in the other database's outbox)."""
    return [m for m in smtp.messages if m["X-Order-Identifier"] == identifier]


def test_confirm_records_each_email_once_and_renders_once(any_db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(any_db)
    first = pipeline.confirm(any_db, identifier)
    rows = deliveries(any_db, identifier)
    assert {(r.kind, r.recipient) for r in rows} == {(EmailKind.CONFIRMATION_BUYER, BUYER),
        (EmailKind.CONFIRMATION_ATTENDEE, SHARED), (EmailKind.ORGANIZER_NOTIFICATION, "owner@example.org")}
    assert first.rendered and first.outcomes == {r.id: Outcome.SENT for r in rows}
    second = pipeline.confirm(any_db, identifier)
    assert not second.rendered and second.outcomes == {r.id: Outcome.DONE for r in rows}
    assert len(deliveries(any_db, identifier)) == 3 and len(sent_for(smtp, identifier)) == 3
    assert ensure_documents(any_db, full_order(any_db, identifier))[1] is None


def test_sending_twice_sends_once_on_both_databases(any_db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(any_db)
    ids = planned(any_db, identifier)
    assert send_all(any_db, identifier, ids) == {i: Outcome.SENT for i in ids}
    assert [send(any_db, d) for d in ids] == [Outcome.DONE] * 3
    assert len(sent_for(smtp, identifier)) == 3
    resend = pipeline.resend_confirmation(any_db, identifier, "owner@example.org", "job-1")
    assert pipeline.resend_confirmation(any_db, identifier, "owner@example.org", "job-1").batch == resend.batch
    assert resend.batch == "resend-1"
    assert pipeline.resend_confirmation(any_db, identifier, None, "job-2").batch == "resend-2"
    assert pipeline.send_cancellation(any_db, identifier).batch == "cancellation"
    assert len(sent_for(smtp, identifier)) == 3 + 2 + 2 + 2  # the cancellation: the buyer's, and the owner's notice


def test_a_sending_row_left_by_a_dead_worker_is_sent_again_but_a_live_claim_is_skipped(
    db: sessionmaker[Session], smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db)
    buyer, *_ = planned(db, identifier)
    with db() as session, session.begin():  # a worker died after marking it 'sending'
        session.execute(sa.update(EmailDelivery).where(EmailDelivery.id == buyer)
                        .values(state=DeliveryState.SENDING, attempts=1, message_id="<dead@example.org>"))
    with db() as session, session.begin():  # a live worker holds the claim
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_CLASS, buyer)))
        assert send_all(db, identifier, [buyer]) == {buyer: Outcome.BUSY}
    assert send_all(db, identifier, [buyer]) == {buyer: Outcome.SENT}
    [row] = [r for r in deliveries(db, identifier) if r.id == buyer]
    assert (row.state, row.attempts, row.message_id) == (DeliveryState.SENT, 2, "<dead@example.org>")
    assert [str(m["Message-ID"]) for m in smtp.messages] == ["<dead@example.org>"]


def test_every_try_of_one_email_carries_the_same_message_id(db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(db)
    [cancel] = planned(db, identifier, CANCELLATION_BATCH)
    smtp.script_replies("451 4.3.0 try again later")
    assert send(db, cancel) is Outcome.RETRY
    assert send(db, cancel) is Outcome.SENT
    [row] = deliveries(db, identifier)
    assert row.message_id == f"<ticketq.{identifier}.{cancel}@localhost>"
    assert [str(m["Message-ID"]) for m in smtp.messages] == [row.message_id]


def test_a_temporary_failure_schedules_a_retry_job_and_the_last_attempt_fails(
    db: sessionmaker[Session], smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db)
    [cancel] = planned(db, identifier, CANCELLATION_BATCH)
    smtp.script_replies("421 4.7.0 busy", "421 4.7.0 busy")
    assert send(db, cancel) is Outcome.RETRY
    [row] = deliveries(db, identifier)
    assert (row.state, row.last_error) == (DeliveryState.QUEUED, "421 4.7.0 busy")
    with db() as session:
        [job] = session.scalars(sa.select(OutboxJob).where(OutboxJob.task == SEND_DELIVERY_TASK)).all()
        assert job.args == [cancel] and job.published_at is None and job.run_after is not None
        assert job.run_after > job.created_at  # the relay sends it when its time comes, not before
    with db() as session, session.begin():  # the retry budget is spent
        session.execute(sa.update(EmailDelivery).values(attempts=MAX_SEND_ATTEMPTS - 1))
    assert send(db, cancel) is Outcome.FAILED
    [row] = deliveries(db, identifier)
    assert (row.state, row.attempts, row.last_error) == (DeliveryState.FAILED, MAX_SEND_ATTEMPTS, "421 4.7.0 busy")


def test_the_smtp_connection_is_reused_and_reopened_when_dropped(db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(db)
    first, second, third = planned(db, identifier)
    client = smtp_client(settings.smtp_url or "")
    send_all(db, identifier, [first])
    connection = client.connection
    send_all(db, identifier, [second])
    assert connection is not None and client.connection is connection
    connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]  # the server or network dropped it
    assert send_all(db, identifier, [third]) == {third: Outcome.SENT}
    assert client.connection is not connection and len(smtp.messages) == 3


def test_an_unreachable_server_defers_the_whole_batch_after_one_try(db: sessionmaker[Session]) -> None:
    identifier = confirmed_order(db)
    ids = planned(db, identifier)
    assert send_all(db, identifier, ids, "smtp://127.0.0.1:1") == {i: Outcome.RETRY for i in ids}
    rows = deliveries(db, identifier)
    assert all(r.state is DeliveryState.QUEUED and "Connection" in (r.last_error or "") for r in rows)
    assert all(r.last_error == rows[0].last_error for r in rows)  # one try, the rest deferred with it


def test_a_batch_sends_each_record_independently(db: sessionmaker[Session], smtp: SmtpSink) -> None:
    identifier = confirmed_order(db)
    buyer, attendee, organizer = planned(db, identifier)
    smtp.refuse[SHARED] = "550 5.1.1 no such user"
    with db() as session, session.begin():  # a live duplicate job is sending the organizer's email
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_CLASS, organizer)))
        outcomes = send_all(db, identifier, [buyer, attendee, organizer, 999_999])
    assert outcomes == {buyer: Outcome.SENT, attendee: Outcome.FAILED, organizer: Outcome.BUSY,
                        999_999: Outcome.DONE}
    assert [m["X-Email-Kind"] for m in smtp.messages] == ["confirmation-buyer"]
    assert send_all(db, identifier, [buyer, attendee, organizer]) == {
        buyer: Outcome.DONE, attendee: Outcome.DONE, organizer: Outcome.SENT}


def test_recording_a_batch_keeps_the_plans_order_and_adds_nothing_the_second_time(
        any_db: sessionmaker[Session]) -> None:
    identifier = confirmed_order(any_db)
    first, second = planned(any_db, identifier), planned(any_db, identifier)
    assert first == second == sorted(first) and len(first) == 3
    rows = [(r.kind, r.recipient, r.state, r.attempts, r.requested_by, r.message_id, r.created_at == r.updated_at)
            for r in sorted(deliveries(any_db, identifier), key=lambda r: r.id)]
    assert rows == [(EmailKind.CONFIRMATION_BUYER, BUYER, DeliveryState.QUEUED, 0, None, None, True),
                    (EmailKind.CONFIRMATION_ATTENDEE, SHARED, DeliveryState.QUEUED, 0, None, None, True),
                    (EmailKind.ORGANIZER_NOTIFICATION, "owner@example.org", DeliveryState.QUEUED, 0, None, None, True)]


def test_preparing_marks_each_row_sending_with_its_own_message_id(any_db: sessionmaker[Session]) -> None:
    identifier = confirmed_order(any_db)
    ids = planned(any_db, identifier)
    order = full_order(any_db, identifier)
    documents, _ = ensure_documents(any_db, order)
    with claimed(any_db, ids) as (session, ours), session.begin():
        prepared = _prepare_all(session, order, ours, documents, {})
    loaded = {r.id: r for r in deliveries(any_db, identifier)}
    assert [p.delivery_id for p in prepared] == ids
    for item in prepared:
        row = loaded[item.delivery_id]
        assert row.message_id == item.message_id == message_id_for(identifier, row.id, settings.mail_from)
        assert (row.state, row.attempts) == (DeliveryState.SENDING, 1)
        kept = item.delivery  # the loaded object carries what the statement wrote, without a reload
        assert (kept.state, kept.attempts, kept.message_id, kept.updated_at) == (
            row.state, row.attempts, row.message_id, row.updated_at)
