"""The audit trail: one `order_events` row per thing that happened to an order, read back oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models.orders import Order, OrderEvent
from models.status import Actor, OrderStatus


def record(session: Session, order: Order | int, kind: str, *, actor: str | None = None, **detail: Any) -> None:
    """One audit row; `order` may be its id alone (a check-in reads columns, not the order)."""
    order_id = order if isinstance(order, int) else order.id
    session.add(OrderEvent(order_id=order_id, kind=kind, actor=actor, detail=detail))


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    actor: str | None
    at: datetime
    detail: dict[str, Any]


def history(order: Order) -> list[HistoryEntry]:
    """Everything that happened to the order, oldest first: its audit rows plus its expiry."""
    entries = [HistoryEntry(e.kind, e.actor, e.created_at, e.detail or {}) for e in order.history]
    if order.expired_at is not None:
        entries.append(HistoryEntry(OrderStatus.EXPIRED.value, None, order.expired_at,
                                    {"by_role": Actor.SYSTEM.value, "tickets": "void"}))
    return sorted(entries, key=lambda entry: entry.at)
