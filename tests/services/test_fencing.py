"""Fencing: a run whose job lease was taken back while it sent (claimed by another worker, or run out)
sends nothing after, and records nothing; a run that holds its lease sends and records every email.
Real PostgreSQL and a real SMTP server that takes the lease back while it receives the first email."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK
from models.base import utcnow
from models.db import get_engine
from models.deliveries import DeliveryState
from models.leases import Claim, Lease, LeaseLost, claim_job, running_lease
from models.orders import OrderEvent
from models.outbox import OutboxJob, enqueue_job
from services.outcomes import Outcome
from services.smtp import close_clients
from tests.services.test_deliveries import planned, send_all
from tests.tasks.confirm_helpers import confirmed_order, deliveries
from ticketq.embedded import SmtpSink

HOLDER, OTHER = "worker-a:1", "worker-b:2"


class HookedSink(SmtpSink):
    """An SMTP sink that runs `before_first` when the first message's DATA arrives, before it answers
    (what happens elsewhere while this email is in flight), and then answers `first_reply`."""

    def __init__(self, before_first: Callable[[], None], first_reply: str | None = None) -> None:
        super().__init__()
        self.before_first: Callable[[], None] | None = before_first
        self.first_reply = first_reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        hook, self.before_first = self.before_first, None
        if hook is not None:
            hook()
            if self.first_reply:
                return self.first_reply
        return str(await super().handle_DATA(server, session, envelope))


@contextlib.contextmanager
def running_as(lease: Lease) -> Iterator[None]:
    """What JobTask.before_start does for a claimed run: its lease is the one the send path checks."""
    token = running_lease.set(lease)
    try:
        yield
    finally:
        running_lease.reset(token)


@pytest.fixture(autouse=True)
def fresh_smtp_clients() -> Iterator[None]:
    close_clients()
    yield
    close_clients()


def claimed_job(db: sessionmaker[Session]) -> Lease:
    with db() as session, session.begin():
        job_id = enqueue_job(session, CONFIRM_TASK, ["fencing"]).id
    with get_engine().begin() as conn:
        claim, _, attempt = claim_job(conn, job_id, HOLDER)
    assert claim is Claim.CLAIMED
    return Lease(job_id, HOLDER, attempt)


def given_to_another(lease: Lease) -> None:
    """The relay took the lease back and another worker claimed the job."""
    with get_engine().begin() as conn:
        assert claim_job(conn, lease.job_id, OTHER, steal_from=HOLDER)[0] is Claim.CLAIMED


def run_out(lease: Lease) -> None:
    with get_engine().begin() as conn:
        conn.execute(sa.update(OutboxJob).where(OutboxJob.id == lease.job_id)
                     .values(lease_until=utcnow() - timedelta(seconds=1)))


def sent_events(db: sessionmaker[Session]) -> int:
    with db() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(OrderEvent)
                                  .where(OrderEvent.kind == "email-sent")) or 0)


@pytest.mark.parametrize("take_back", [given_to_another, run_out], ids=["claimed-by-another", "ran-out"])
def test_a_run_whose_lease_is_taken_back_mid_job_sends_and_records_nothing_after(
        db: sessionmaker[Session], take_back: Callable[[Lease], None]) -> None:
    identifier = confirmed_order(db, completed=False)
    ids = planned(db, identifier)
    lease = claimed_job(db)
    sink = HookedSink(lambda: take_back(lease)).start()
    try:
        with running_as(lease), pytest.raises(LeaseLost):
            send_all(db, identifier, ids, sink.url)
    finally:
        sink.stop()
    # The email in flight when the lease went is the only one that left; its record was fenced out.
    assert len(sink.messages) == 1
    assert [r.state for r in deliveries(db, identifier)] == [DeliveryState.SENDING] * 3
    assert sent_events(db) == 0


def test_a_run_that_holds_its_lease_sends_and_records_every_email(db: sessionmaker[Session],
                                                                  smtp: SmtpSink) -> None:
    identifier = confirmed_order(db, completed=False)
    ids = planned(db, identifier)
    with running_as(claimed_job(db)):
        outcomes = send_all(db, identifier, ids)
    assert outcomes == {i: Outcome.SENT for i in ids}
    assert [r.state for r in deliveries(db, identifier)] == [DeliveryState.SENT] * 3
    assert len(smtp.messages) == 3 and sent_events(db) == 3
