"""The transactional outbox: a job is written in the same transaction as the change that needs it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow


class OutboxJob(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(100))
    args: Mapped[list[Any]] = mapped_column(sa.JSON, default=list)
    queue: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_outbox_unpublished", "published_at", "id"),)


def enqueue_job(session: Session, task: str, args: list[Any], queue: str) -> OutboxJob:
    """Record a job to publish once the surrounding transaction commits."""
    job = OutboxJob(task=task, args=args, queue=queue)
    session.add(job)
    session.flush()
    jobs: list[int] = session.info.setdefault("outbox_job_ids", [])
    jobs.append(job.id)
    return job


def pending_job_ids(session: Session) -> list[int]:
    """The jobs this session wrote, to publish right after its commit."""
    return list(session.info.get("outbox_job_ids", []))


# Task names and queues (contract section 7); the tasks register under the same names.
CONFIRM_TASK = "orders.confirm"
RESEND_TASK = "orders.resend_confirmation"
CANCELLATION_TASK = "orders.send_cancellation"
EXPIRE_TASK = "orders.expire_stale"
RELAY_TASK = "outbox.relay"
RENDER_TASK = "documents.render"
MAIL_SEND_TASK = "mail.send"
MAIL_BATCH_TASK = "mail.send_batch"
ORDERS_QUEUE, DOCUMENTS_QUEUE, MAIL_QUEUE = "orders", "documents", "mail"


def mark_published(session: Session, job_ids: list[int]) -> None:
    """Note that these jobs reached the broker, so the relay does not send them again (caller commits)."""
    if job_ids:
        session.execute(sa.update(OutboxJob).where(OutboxJob.id.in_(job_ids), OutboxJob.published_at.is_(None))
                        .values(published_at=utcnow()).execution_options(synchronize_session=False))
