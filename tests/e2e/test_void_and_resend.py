"""Void tickets and resend joins through the real API, worker and SMTP sink: a cancelled order's
tickets PDF answers 410 while its invoice still downloads; five quick resends send one copy."""

from __future__ import annotations

import time

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import RESEND_TASK
from models.orders import Order, OrderEvent
from models.outbox import OutboxJob, enqueue_job
from tests.api.conftest import only_error
from tests.backends import Backends, CeleryWorker, reset_windows
from tests.tasks.confirm_helpers import (
    BUYER,
    SHARED,
    by_kind,
    sent_confirmation,
    wait_jobs_done,
    wait_settled,
)
from ticketq.embedded import SmtpSink

RESEND_URL = "/v1/orders/resend-email"


def api(backends: Backends, per_user: str = "60/minute") -> TestClient:
    """The API in-process with fresh resend limits in the run's Redis."""
    from api.app import create_app
    from api.ratelimit import resend_limits

    reset_windows(backends.redis_url)
    return TestClient(create_app(resend_limits(backends.redis_url, "60/minute", per_user)))


def token(db: sessionmaker[Session], email: str) -> dict[str, str]:
    from models.users import create_user_token

    with db() as session, session.begin():
        _, value = create_user_token(session, email)
    return {"Authorization": f"Bearer {value}"}


def audit_kinds(db: sessionmaker[Session], identifier: str) -> list[str]:
    with db() as session:
        return list(session.scalars(sa.select(OrderEvent.kind).join(Order).where(
            Order.identifier == identifier, OrderEvent.kind.like("resend-%")).order_by(OrderEvent.id)))


def test_a_cancelled_orders_tickets_answer_410_and_its_invoice_200(
        backends: Backends, db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink) -> None:
    identifier = sent_confirmation(db, smtp)
    owner, buyer = token(db, "owner@example.org"), token(db, "buyer@example.org")
    url = f"/v1/orders/{identifier}"
    with api(backends) as client:
        before = client.get(f"{url}/tickets.pdf", headers=buyer)
        assert before.status_code == 200 and before.content.startswith(b"%PDF")
        assert client.patch(url, json={"status": "cancelled"}, headers=owner).status_code == 200
        for who in (buyer, owner):
            gone = client.get(f"{url}/tickets.pdf", headers=who)
            assert gone.status_code == 410 and gone.headers["content-type"] == "application/json"
            assert only_error(gone)["detail"] == "This order was cancelled; its tickets are void"
            # The cancellation renders the order's documents again (its credit note beside the invoice);
            # meanwhile the invoice stored before is served, never a 404.
            invoice = client.get(f"{url}/invoice.pdf", headers=who)
            assert invoice.status_code == 200 and invoice.content.startswith(b"%PDF")
        # Never issued again: the void tickets are not resent.
        resend = client.post(RESEND_URL, json={"data": {"order": identifier}}, headers=owner)
        assert resend.status_code == 422


def test_five_quick_resends_send_one_copy_of_each_email(
        backends: Backends, db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink) -> None:
    identifier = sent_confirmation(db, smtp)
    owner = token(db, "owner@example.org")
    with api(backends, per_user="5/minute") as client:
        codes = [client.post(RESEND_URL, json={"data": {"order": identifier}}, headers=owner).status_code
                 for _ in range(6)]
    assert codes == [202] * 5 + [429]  # the joined requests still counted against the limit

    rows = [r for r in wait_settled(db, identifier, 5) if r.batch.startswith("resend-")]
    wait_jobs_done(db, 2)
    time.sleep(1)  # a second copy, if any, would be on its way by now
    assert {(r.batch, r.kind.value, r.recipient) for r in rows} == {
        ("resend-1", "confirmation-buyer", BUYER), ("resend-1", "confirmation-attendee", SHARED)}
    assert set(by_kind(smtp.messages)) == {("confirmation-buyer", BUYER), ("confirmation-attendee", SHARED)}
    with db() as session:
        assert len(session.scalars(sa.select(OutboxJob.id).where(OutboxJob.task == RESEND_TASK)).all()) == 1
    assert audit_kinds(db, identifier) == ["resend-requested", *["resend-joined"] * 4, "resend-queued"]


def test_two_jobs_racing_past_the_join_still_send_once(
        db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink) -> None:
    """Two requests that both found nothing waiting each queued a job: the job that runs second finds
    the batch the first chose after its request, and joins it."""
    from tasks.outbox_relay import publish_jobs

    identifier = sent_confirmation(db, smtp)
    with db() as session, session.begin():
        ids = [enqueue_job(session, RESEND_TASK, [identifier, "owner@example.org"]).id for _ in range(2)]
    publish_jobs(db, ids)
    wait_jobs_done(db, 3)
    rows = [r for r in wait_settled(db, identifier, 5) if r.batch.startswith("resend-")]
    assert {r.batch for r in rows} == {"resend-1"} and len(rows) == 2
    time.sleep(1)
    assert set(by_kind(smtp.messages)) == {("confirmation-buyer", BUYER), ("confirmation-attendee", SHARED)}
    assert audit_kinds(db, identifier) == ["resend-queued", "resend-merged"]
