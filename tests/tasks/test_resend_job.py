"""orders.resend_confirmation through a real worker: a new batch with the stored PDFs, regenerated if missing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.jobs import RESEND_TASK
from models.deliveries import DeliveryState, DocumentKind
from models.transitions import load_order
from services.storage import find_document
from tests.backends import CeleryWorker
from tests.tasks.confirm_helpers import (
    BUYER,
    SHARED,
    attachments,
    by_kind,
    pdf_text,
    sent_confirmation,
    wait_jobs_done,
    wait_settled,
)
from ticketq.embedded import SmtpSink
from worker import app


def stored(db: sessionmaker[Session], identifier: str) -> dict[str, Path | None]:
    with db() as session:
        order = load_order(session, identifier)
        return {"tickets": find_document(session, order, DocumentKind.TICKETS),
                "invoice": find_document(session, order, DocumentKind.INVOICE),
                "attendee": find_document(session, order, DocumentKind.ATTENDEE_TICKET, order.attendees[2].id)}


def test_resend_after_deleting_the_pdfs_regenerates_them(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = sent_confirmation(db, smtp)
    paths = stored(db, identifier)
    for path in paths.values():
        assert path is not None
        path.unlink()
    assert set(stored(db, identifier).values()) == {None}

    app.send_task(RESEND_TASK, args=[identifier, "owner@example.org"], queue="orders")
    rows = [r for r in wait_settled(db, identifier, 5) if r.batch == "resend-1"]
    assert {(r.kind.value, r.recipient, r.state, r.requested_by) for r in rows} == {
        ("confirmation-buyer", BUYER, DeliveryState.SENT, "owner@example.org"),
        ("confirmation-attendee", SHARED, DeliveryState.SENT, "owner@example.org"),
    }
    assert stored(db, identifier) == paths  # same keyed paths, files written again
    assert all(p is not None and p.is_file() for p in paths.values())
    mails = by_kind(smtp.messages)
    assert set(mails) == {("confirmation-buyer", BUYER), ("confirmation-attendee", SHARED)}
    family = attachments(mails[("confirmation-attendee", SHARED)])
    assert "Cy Family" in pdf_text(family["PyCon Test - ticket 3 - Cy Family.pdf"])


def test_resend_reuses_stored_pdfs_and_a_redelivered_job_reuses_its_batch(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    identifier = sent_confirmation(db, smtp)
    tickets = stored(db, identifier)["tickets"]
    assert tickets is not None
    written = tickets.stat().st_mtime_ns

    for _ in range(2):  # the same job delivered twice (same task id)
        app.send_task(RESEND_TASK, args=[identifier, "owner@example.org"], queue="orders",
                      task_id=f"resend-{identifier}")
    wait_settled(db, identifier, 5)
    app.send_task(RESEND_TASK, args=[identifier, None], queue="orders")  # a second request: a new batch
    rows = wait_settled(db, identifier, 7)
    wait_jobs_done(db, 4)  # the order's confirmation, the resend delivered twice, the second resend
    rows = wait_settled(db, identifier, 7)
    assert sorted({r.batch for r in rows}) == ["confirmation", "resend-1", "resend-2"]
    assert len(rows) == 7 and all(r.state is DeliveryState.SENT for r in rows)
    assert len(smtp.messages) == 4
    assert "organizer-notification" not in {m["X-Email-Kind"] for m in smtp.messages}
    assert tickets.stat().st_mtime_ns == written
