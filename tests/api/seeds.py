"""An event with an order in every status, for the order page's tests (API and browser)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models import EmailDelivery
from models.base import utcnow
from models.expiration import expire_stale
from models.status import OrderStatus
from models.transitions import change_status
from models.users import create_user_token
from tests.factories import make_event, make_order, make_user

HOSTILE = "<script>alert(1)</script>"


def seed_event(factory: sessionmaker[Session]) -> dict[str, Any]:
    """An event with one order in each status (a hostile buyer name among them) and some deliveries."""
    with factory() as s, s.begin():
        owner = make_user(s, "owner@example.org")
        _, token = create_user_token(s, owner.email)
        event = make_event(s, owner=owner, name="PyCon <Test>")
        buyer = make_user(s, "buyer@example.org")
        orders = {status: make_order(s, event, buyer, status=status) for status in (
            OrderStatus.INITIALIZING, OrderStatus.PLACED, OrderStatus.PENDING, OrderStatus.COMPLETED)}
        orders[OrderStatus.CANCELLED] = change_status(
            s, make_order(s, event, buyer, status=OrderStatus.PLACED), OrderStatus.CANCELLED, by=owner.email)
        orders[OrderStatus.EXPIRED] = make_order(s, event, buyer, now=utcnow() - timedelta(hours=3))
        for i, order in enumerate(orders.values()):
            order.buyer_name, order.buyer_email = (HOSTILE if i == 0 else f"Buyer {i}"), f"buyer{i}@example.org"
        for kind, recipient, state in (("confirmation-buyer", "buyer@example.org", "sent"),
                                       ("confirmation-attendee", "ann@example.org", "failed"),
                                       ("organizer-notification", "owner@example.org", "queued")):
            s.add(EmailDelivery(order_id=orders[OrderStatus.COMPLETED].id, batch="confirmation", kind=kind,
                                recipient=recipient, state=state,
                                last_error="550 no such user" if state == "failed" else None))
        event_id, identifiers = event.id, {status: order.identifier for status, order in orders.items()}
    expire_stale(factory)
    return {"event_id": event_id, "token": token, "orders": identifiers}
