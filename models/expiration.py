"""Beat's sweep: every held order past its deadline expires, in batches, each exactly once."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.orders import Order
from models.status import DEADLINED, OrderStatus
from models.webhooks import notify_many, order_data


def expire_stale(
    factory: sessionmaker[Session], *, now: datetime | None = None, batch_size: int = 50_000
) -> dict[str, int]:
    """Expire every held order past its deadline: one conditional UPDATE per status and batch.

    Rows another sweeper holds are skipped (SKIP LOCKED) and the WHERE is re-checked, so two
    beats, or a payment racing the sweep, never double-apply: each row moves once. The `expired`
    status it writes is what revokes the order's tickets (status.py VOID_TICKETS): no second write.
    """
    now = now or utcnow()
    counts: dict[str, int] = {}
    for status in sorted(DEADLINED):
        due = sa.and_(Order.status == status, Order.expires_at <= now)
        counts[status.value] = 0
        while True:
            with factory() as session, session.begin():
                expired = _expire_batch(session, due, now, batch_size)
            counts[status.value] += expired
            if expired < batch_size:
                break
    return counts


def _expire_batch(session: Session, due: sa.ColumnElement[bool], now: datetime, batch_size: int) -> int:
    """Expire one batch in one statement that returns what the webhooks need (SQLite ignores the row locks; its
    writers are serialized anyway). The order row is the record of its expiry (`expired_at`, shown by
    `history`): an audit row per expired order would only repeat it."""
    locked = (sa.select(Order.id).where(due).order_by(Order.expires_at).limit(batch_size)
              .with_for_update(skip_locked=True))
    expired = session.execute(
        sa.update(Order).where(Order.id.in_(locked), due)
        .values(status=OrderStatus.EXPIRED, expired_at=now, updated_at=now, expires_at=None,
                revision=Order.revision + 1)
        .returning(Order.event_id, Order.identifier)
        .execution_options(synchronize_session=False)).all()
    # The webhooks' notifications commit with the expiry they report (one query when none listens).
    notify_many(session, [(event, order_data(event, identifier, OrderStatus.EXPIRED.value))
                          for event, identifier in expired], "order.expired", now)
    return len(expired)
