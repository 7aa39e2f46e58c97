"""Who may do what: the contract's co-organizer rule and the buyer-or-co-organizer rule."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from models.access import Lookup, OrderFacts
from models.errors import Forbidden, NotFound
from models.events import ROLE_GRANTERS, Event, has_role, is_coorganizer
from models.orders import Order
from models.users import Principal

COORGANIZER_REQUIRED = "Co-Organizer Access Required"
GRANTER_REQUIRED = "Owner or Organizer Access Required"
ORDER_ACCESS_REQUIRED = "Only the buyer or a co-organizer of the event may see this order"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def find_event(session: Session, event_id: int) -> Event:
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("Event not found", pointer="/data/event")
    return event


def require_coorganizer(session: Session, user: Principal, event_id: int, *, pointer: str = "/data/event") -> None:
    if not is_coorganizer(session, user, event_id):
        raise Forbidden(COORGANIZER_REQUIRED, pointer=pointer)


def require_granter(session: Session, user: Principal, event_id: int) -> None:
    if not has_role(session, user, event_id, ROLE_GRANTERS):
        raise Forbidden(GRANTER_REQUIRED, pointer="/data/event")


def valid_identifier(identifier: str) -> bool:
    """Anything that cannot be an order identifier is simply not found (and never reaches SQL)."""
    return _IDENTIFIER.fullmatch(identifier) is not None


def is_buyer(user: Principal, order: Order | OrderFacts) -> bool:
    buyer = order.buyer_id if isinstance(order, OrderFacts) else order.user_id
    return buyer is not None and buyer == user.id


def order_found(found: Lookup) -> OrderFacts:
    """The order the lookup read with the caller; 404 when there is none."""
    if found.order is None:
        raise NotFound("Order not found", pointer="/data/order")
    return found.order


def require_access(found: Lookup) -> OrderFacts:
    """404 for no such order, 403 unless the caller is its buyer or runs its event."""
    order = order_found(found)
    if not (is_buyer(found.caller, order) or found.runs_event):
        raise Forbidden(ORDER_ACCESS_REQUIRED, pointer="/data/order")
    return order
