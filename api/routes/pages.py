"""The organizer order page: a server-rendered shell plus the JSON list it reads (one query per page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
import limits
import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.access import find_event, require_coorganizer
from api.deps import CurrentUser, DbSession
from api.schemas import PersonOut
from models.deliveries import EmailDelivery
from models.orders import Order
from models.status import COLOURS, OrderStatus, is_resendable
from ticketq.settings import settings

router = APIRouter(tags=["pages"])

PAGES_DIR = Path(__file__).resolve().parents[2] / "templates" / "pages"
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
# The shell only loads its own script and stylesheet and talks to its own API: hostile data
# that slipped past escaping still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PAGES_DIR),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


class DeliveryRow(BaseModel):
    batch: str
    kind: str
    recipient: str
    state: str
    attempts: int
    last_error: str | None
    updated_at: datetime | None


class OrderRow(BaseModel):
    identifier: str
    status: str
    color: str
    resendable: bool
    amount: str
    currency: str
    payment_mode: str | None
    buyer: PersonOut
    created_at: datetime
    emails: list[DeliveryRow]


class EventRef(BaseModel):
    id: int
    name: str
    currency: str


class EventOrders(BaseModel):
    event: EventRef
    orders: list[OrderRow]
    page: int
    per_page: int
    total: int


@dataclass
class OrdersPage:
    orders: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _page_statement(event_id: int, status: OrderStatus | None, page: int, per_page: int) -> sa.Select[Any]:
    """Orders of one page LEFT JOINed to their deliveries; `count(*) OVER ()` carries the total."""
    orders = (
        sa.select(Order.id, Order.identifier, Order.status, Order.buyer_name, Order.buyer_email, Order.amount,
                  Order.currency, Order.payment_mode, Order.created_at,
                  sa.func.count().over().label("total"))
        .where(Order.event_id == event_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    )
    if status is not None:
        orders = orders.where(Order.status == status)
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
    per_page: int = DEFAULT_PER_PAGE,
) -> OrdersPage:
    """One page of an event's orders, newest first, each with its email deliveries: ONE statement."""
    result = OrdersPage()
    by_id: dict[int, dict[str, Any]] = {}
    for row in session.execute(_page_statement(event_id, status, page, per_page)):
        result.total = row.total
        if row.id not in by_id:
            by_id[row.id] = _order_json(row)
            result.orders.append(by_id[row.id])
        if row.delivery_id is not None:
            by_id[row.id]["emails"].append(_delivery_json(row))
    if not result.orders and page > 1:
        # Past the last page the window carries no total; only then ask for it separately.
        count = sa.select(sa.func.count()).select_from(Order).where(Order.event_id == event_id)
        result.total = session.scalar(count if status is None else count.where(Order.status == status)) or 0
    return result


@router.get("/v1/events/{event_id}/orders", response_model=EventOrders, tags=["events"])
def event_orders(
    event_id: int,
    session: DbSession,
    user: CurrentUser,
    status: Annotated[OrderStatus | None, Query(description="only orders in this status")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
) -> dict[str, Any]:
    """The event's orders with their email deliveries, for co-organizers (the order page's data)."""
    require_coorganizer(session, user, event_id)  # before the lookup: outsiders learn nothing, not even 404
    event = find_event(session, event_id)
    found = list_event_orders(session, event_id, status=status, page=page, per_page=per_page)
    return {
        "event": {"id": event.id, "name": event.name, "currency": event.currency},
        "orders": found.orders, "page": page, "per_page": per_page, "total": found.total,
    }


def limit_message() -> str:
    """The 429 text, from RESEND_LIMIT_PER_USER: "Only 5 resend actions are allowed in a minute."."""
    try:
        item = limits.parse(settings.resend_limit_per_user)
    except ValueError:
        return "Too many resend actions."
    unit = item.GRANULARITY.name
    period = f"a {unit}" if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"Only {item.amount} resend actions are allowed in {period}."


def _page_config(event_id: int) -> dict[str, Any]:
    return {
        "eventId": event_id, "ordersUrl": f"/v1/events/{event_id}/orders", "resendUrl": "/v1/orders/resend-email",
        "statuses": [{"value": s.value, "color": COLOURS[s], "resendable": is_resendable(s)} for s in OrderStatus],
        "perPage": DEFAULT_PER_PAGE, "limitMessage": limit_message(),
    }


@router.get("/events/{event_id}/orders", response_class=HTMLResponse, include_in_schema=False)
def orders_page(event_id: int) -> HTMLResponse:
    """The HTML shell; it holds no data, so it needs no auth (the browser signs in with a token)."""
    html = _env.get_template("orders.html").render(config=_page_config(event_id), event_id=event_id)
    return HTMLResponse(html, headers=SECURITY_HEADERS)


ASSETS = {"orders.css": "text/css; charset=utf-8", "orders.js": "text/javascript; charset=utf-8"}


@router.get("/pages/{name}", include_in_schema=False)
def page_asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, "Not Found")
    return Response((PAGES_DIR / name).read_bytes(), media_type=ASSETS[name],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
