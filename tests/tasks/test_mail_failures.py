"""SMTP failures through a real worker: 4xx retried with backoff until sent once, 5xx failed without retry."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CANCELLATION_TASK, CONFIRM_TASK, SEND_DELIVERY_TASK
from models.deliveries import DeliveryState, EmailKind
from models.status import OrderStatus
from models.transitions import change_status, load_order
from tests.backends import CeleryWorker
from tests.tasks.confirm_helpers import BUYER, SHARED, by_kind, confirmed_order, wait_jobs_done, wait_settled
from ticketq.embedded import SmtpSink
from worker import app


def cancel(db: sessionmaker[Session], identifier: str) -> None:
    with db() as session, session.begin():
        change_status(session, load_order(session, identifier), OrderStatus.CANCELLED, by="owner@example.org")


def test_451_twice_then_250_gives_one_sent_record_and_one_message(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db, [("Ada Buyer", BUYER)])
    cancel(db, identifier)
    smtp.script_replies("451 4.3.0 try again later", "451 4.3.0 still busy")
    app.send_task(CANCELLATION_TASK, args=[identifier], queue="orders")

    rows = wait_settled(db, identifier, 2, timeout=60)  # the buyer's, and the owner's notice
    [row] = [r for r in rows if r.kind is EmailKind.CANCELLATION]
    assert (row.kind, row.recipient, row.batch, row.state) == (
        EmailKind.CANCELLATION, BUYER, "cancellation", DeliveryState.SENT)
    assert all(r.state is DeliveryState.SENT and r.last_error is None for r in rows)
    assert sum(r.attempts for r in rows) == len(rows) + 2  # the two 451s, each met by one of them
    assert len(smtp.messages) == len(rows)
    message = next(m for m in smtp.messages if m["X-Email-Kind"] == "cancellation")
    assert message["X-Order-Identifier"] == identifier and str(message["To"]) == BUYER
    assert message["Message-ID"] == row.message_id


def test_550_marks_the_record_failed_with_the_reply_and_does_not_retry(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = confirmed_order(db)
    smtp.refuse[BUYER] = "550 5.1.1 no such user"
    app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")

    rows = wait_settled(db, identifier, 3)
    jobs = wait_jobs_done(db, 1)
    # A retry would be a job written with the failure, in the same transaction: there is none.
    assert SEND_DELIVERY_TASK not in {j.task for j in jobs}
    states = {(r.kind.value, r.recipient): (r.state, r.attempts, r.last_error) for r in rows}
    assert states[("confirmation-buyer", BUYER)] == (DeliveryState.FAILED, 1, "550 5.1.1 no such user")
    assert states[("confirmation-attendee", SHARED)][:2] == (DeliveryState.SENT, 1)
    assert set(by_kind(smtp.messages)) == {(r.kind.value, r.recipient) for r in rows if r.recipient != BUYER}
    with db() as session:
        failed = [e for e in load_order(session, identifier).history if e.kind == "email-failed"]
        assert [e.detail["recipient"] for e in failed] == [BUYER]
