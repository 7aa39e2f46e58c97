"""An event's orders, a page at a time, each with its email deliveries: ONE statement per page
(the organizer order page reads it through `GET /v1/events/{event_id}/orders`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.deliveries import EmailDelivery
from models.orders import Order
from models.status import COLOURS, OrderStatus, is_resendable

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50


@dataclass
class OrdersPage:
    orders: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def matching(event_id: int, status: OrderStatus | None, search: str | None) -> list[sa.ColumnElement[bool]]:
    """The filters of the order page: the event, a status, and a search in buyer name, email or order code."""
    where = [Order.event_id == event_id]
    if status is not None:
        where.append(Order.status == status)
    search = (search or "").strip()
    if search:
        where.append(sa.or_(Order.buyer_name.icontains(search, autoescape=True),
                            Order.buyer_email.icontains(search, autoescape=True),
                            Order.identifier.istartswith(search, autoescape=True)))
    return where


def _page_statement(event_id: int, status: OrderStatus | None, page: int, per_page: int,
                    search: str | None = None) -> sa.Select[Any]:
    """Orders of one page LEFT JOINed to their deliveries; `count(*) OVER ()` carries the total."""
    orders = (
        sa.select(Order.id, Order.identifier, Order.status, Order.buyer_name, Order.buyer_email, Order.amount,
                  Order.currency, Order.payment_mode, Order.created_at,
                  sa.func.count().over().label("total"))
        .where(*matching(event_id, status, search))
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    )
    page_rows = orders.subquery("page")
    return (
        sa.select(page_rows, EmailDelivery.id.label("delivery_id"), EmailDelivery.batch, EmailDelivery.kind,
                  EmailDelivery.recipient, EmailDelivery.state, EmailDelivery.attempts,
                  EmailDelivery.last_error, EmailDelivery.updated_at.label("delivery_updated_at"))
        .outerjoin(EmailDelivery, EmailDelivery.order_id == page_rows.c.id)
        .order_by(page_rows.c.created_at.desc(), page_rows.c.id.desc(), EmailDelivery.id.desc())
    )


def _order_json(row: Any) -> dict[str, Any]:
    status = OrderStatus(row.status)
    return {
        "identifier": row.identifier, "status": status.value, "color": COLOURS[status],
        "resendable": is_resendable(status), "amount": str(row.amount), "currency": row.currency,
        "payment_mode": row.payment_mode, "buyer": {"name": row.buyer_name, "email": row.buyer_email},
        "created_at": _iso(row.created_at), "emails": [],
    }


def _delivery_json(row: Any) -> dict[str, Any]:
    return {
        "batch": row.batch, "kind": str(row.kind), "recipient": row.recipient, "state": str(row.state),
        "attempts": row.attempts, "last_error": row.last_error, "updated_at": _iso(row.delivery_updated_at),
    }


def list_event_orders(
    session: Session, event_id: int, *, status: OrderStatus | None = None, page: int = 1,
    per_page: int = DEFAULT_PER_PAGE, search: str | None = None,
) -> OrdersPage:
    """One page of an event's orders, newest first, each with its email deliveries: ONE statement."""
    result = OrdersPage()
    by_id: dict[int, dict[str, Any]] = {}
    for row in session.execute(_page_statement(event_id, status, page, per_page, search)):
        result.total = row.total
        if row.id not in by_id:
            by_id[row.id] = _order_json(row)
            result.orders.append(by_id[row.id])
        if row.delivery_id is not None:
            by_id[row.id]["emails"].append(_delivery_json(row))
    if not result.orders and page > 1:
        # Past the last page the window carries no total; only then ask for it separately.
        count = sa.select(sa.func.count()).select_from(Order).where(*matching(event_id, status, search))
        result.total = session.scalar(count) or 0
    return result


def export_rows(session: Session, event_id: int, *, status: OrderStatus | None = None,
                search: str | None = None) -> sa.Result[Any]:
    """Every order the page's filters match, newest first, without deliveries (the CSV export)."""
    return session.execute(
        sa.select(Order.identifier, Order.status, Order.buyer_name, Order.buyer_email, Order.amount, Order.currency,
                  Order.payment_mode, Order.created_at)
        .where(*matching(event_id, status, search)).order_by(Order.created_at.desc(), Order.id.desc()))
