"""Webhooks: an event's subscriptions, each notification owed to one of them, and every attempt to send it.

A notification is written with the change that caused it, in the same transaction, together with
its outbox job (core/jobs.py WEBHOOK_TASK), so it is sent exactly when the change commits and is
never lost; services/webhook_sending.py sends it.
"""

from __future__ import annotations

import base64
import enum
import json
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from core.jobs import WEBHOOK_TASK
from models.base import Base, UTCDateTime, str_enum, utcnow
from models.outbox import enqueue_job
from models.status import OrderStatus

EVENT_TYPES = ("order.placed", "order.completed", "order.expired", "order.cancelled", "email.sent", "email.failed")


class MessageState(enum.StrEnum):
    PENDING = "pending"  # not delivered yet; a job will try (again)
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # retries ran out, or the webhook was disabled (410) or deleted


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    events: Mapped[list[str]] = mapped_column(sa.JSON)
    secret: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the receiver answered 410 Gone
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(500))

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class WebhookMessage(Base):
    """One notification owed to one webhook; its `msg_id` is the `webhook-id` of every attempt."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    msg_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str] = mapped_column(sa.String(40))
    payload: Mapped[str] = mapped_column(sa.Text)  # the exact body, fixed when the change committed
    state: Mapped[MessageState] = mapped_column(str_enum(MessageState, "webhook_message_state", 16),
                                                default=MessageState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set with a final state; indexed for the retention purge (WEBHOOK_RETENTION_DAYS).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    webhook: Mapped[Webhook] = relationship()
    tries: Mapped[list[WebhookAttempt]] = relationship(order_by="WebhookAttempt.id", cascade="all, delete-orphan",
                                                       back_populates="message")


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.String(500))
    duration_ms: Mapped[int] = mapped_column(default=0)

    message: Mapped[WebhookMessage] = relationship(back_populates="tries")


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes: the Standard Webhooks form of a signing secret."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def create_webhook(session: Session, event_id: int, url: str, events: Sequence[str]) -> Webhook:
    hook = Webhook(event_id=event_id, url=url, events=list(dict.fromkeys(events)), secret=new_secret())
    session.add(hook)
    session.flush()
    return hook


def event_webhooks(session: Session, event_id: int) -> list[Webhook]:
    return list(session.scalars(sa.select(Webhook).where(Webhook.event_id == event_id).order_by(Webhook.id)))


def find_webhook(session: Session, event_id: int, webhook_id: int) -> Webhook | None:
    return session.scalar(sa.select(Webhook).where(Webhook.id == webhook_id, Webhook.event_id == event_id))


def enable_webhook(session: Session, hook: Webhook) -> Webhook:
    """Send to `hook` again after a 410 disabled it; a no-op for a live one. Notifications that failed
    while it was disabled stay failed: only changes from now on are notified."""
    if hook.disabled_at is not None:
        hook.disabled_at, hook.disabled_reason = None, None
        session.flush()
    return hook


def purge_messages(session: Session, before: datetime, limit: int = 10_000) -> int:
    """Delete a bounded batch of notifications that finished (delivered or failed) before `before`, with
    their attempts. A pending one, still owed to its receiver, is never deleted, however old."""
    old = list(session.scalars(sa.select(WebhookMessage.id).where(
        WebhookMessage.finished_at < before, WebhookMessage.state != MessageState.PENDING)
        .order_by(WebhookMessage.finished_at).limit(limit)))
    if not old:
        return 0
    # The attempts first (their foreign key cascades in PostgreSQL; this does not rely on it).
    session.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(old))
                    .execution_options(synchronize_session=False))
    result = session.execute(sa.delete(WebhookMessage).where(WebhookMessage.id.in_(old),
                                                             WebhookMessage.state != MessageState.PENDING)
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def recent_messages(session: Session, webhook_id: int, limit: int = 100) -> list[WebhookMessage]:
    """The webhook's notifications, newest first, with their attempts."""
    return list(session.scalars(sa.select(WebhookMessage).where(WebhookMessage.webhook_id == webhook_id)
                                .order_by(WebhookMessage.id.desc()).limit(limit)
                                .options(selectinload(WebhookMessage.tries))))


def listens(session: Session, event_id: int, type_: str) -> bool:
    """Whether a live webhook of the event is subscribed to `type_`."""
    rows = session.scalars(sa.select(Webhook.events).where(Webhook.event_id == event_id,
                                                           Webhook.disabled_at.is_(None)))
    return any(type_ in (types or []) for types in rows)


def notify(session: Session, event_id: int, type_: str, data: dict[str, Any], now: datetime | None = None) -> int:
    """Owe `type_` to each live webhook of the event subscribed to it: a message and its job, written
    in the caller's transaction. One indexed query when nobody listens."""
    return notify_many(session, [(event_id, data)], type_, now)


def notify_many(session: Session, items: Iterable[tuple[int, dict[str, Any]]], type_: str,
                now: datetime | None = None) -> int:
    """`notify` for many changes of one type (the expiry sweep's batches), one query for the webhooks."""
    items = list(items)
    if not items:
        return 0
    hooks = session.execute(sa.select(Webhook.id, Webhook.event_id, Webhook.events).where(
        Webhook.event_id.in_({event for event, _ in items}), Webhook.disabled_at.is_(None))).all()
    listening: dict[int, list[int]] = {}
    for hook_id, event_id, types in hooks:
        if type_ in (types or []):
            listening.setdefault(event_id, []).append(hook_id)
    if not listening:
        return 0
    now = now or utcnow()
    timestamp = now.isoformat().replace("+00:00", "Z")
    count = 0
    for event_id, data in items:
        for hook_id in listening.get(event_id, []):
            body = json.dumps({"type": type_, "timestamp": timestamp, "data": data}, separators=(",", ":"))
            message = WebhookMessage(webhook_id=hook_id, msg_id="msg_" + secrets.token_hex(12), type=type_,
                                     payload=body, created_at=now)
            session.add(message)
            session.flush()
            enqueue_job(session, WEBHOOK_TASK, [message.id])
            count += 1
    return count


def order_data(event_id: int, identifier: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"event": event_id, "order": identifier, "status": status, **extra}


STATUS_TYPES = {OrderStatus.PLACED: "order.placed", OrderStatus.COMPLETED: "order.completed",
                OrderStatus.EXPIRED: "order.expired", OrderStatus.CANCELLED: "order.cancelled"}


def notify_status(session: Session, event_id: int, identifier: str, status: OrderStatus,
                  now: datetime | None = None) -> int:
    """An order reached `status`: owe its webhook type, if it has one."""
    type_ = STATUS_TYPES.get(status)
    if type_ is None:
        return 0
    return notify(session, event_id, type_, order_data(event_id, identifier, status.value), now)
