"""Who may do what: the contract's co-organizer rule and the buyer-or-co-organizer rule."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from models.errors import Forbidden, NotFound
from models.events import ROLE_GRANTERS, Event, has_role, is_coorganizer
from models.ordering import load_order
from models.orders import Order
from models.users import User

COORGANIZER_REQUIRED = "Co-Organizer Access Required"
GRANTER_REQUIRED = "Owner or Organizer Access Required"
ORDER_ACCESS_REQUIRED = "Only the buyer or a co-organizer of the event may see this order"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def find_event(session: Session, event_id: int) -> Event:
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("Event not found", pointer="/data/event")
    return event


def require_coorganizer(session: Session, user: User, event_id: int, *, pointer: str = "/data/event") -> None:
    if not is_coorganizer(session, user, event_id):
        raise Forbidden(COORGANIZER_REQUIRED, pointer=pointer)


def require_granter(session: Session, user: User, event_id: int) -> None:
    if not has_role(session, user, event_id, ROLE_GRANTERS):
        raise Forbidden(GRANTER_REQUIRED, pointer="/data/event")


def find_order(session: Session, identifier: str, *, lock: bool = False) -> Order:
    """An order by identifier; anything that cannot be one is simply not found."""
    if not _IDENTIFIER.fullmatch(identifier):
        raise NotFound("Order not found", pointer="/data/order")
    return load_order(session, identifier, lock=lock)


def is_buyer(user: User, order: Order) -> bool:
    return order.user_id is not None and order.user_id == user.id


def require_order_access(session: Session, user: User, order: Order) -> None:
    if not (is_buyer(user, order) or is_coorganizer(session, user, order.event_id)):
        raise Forbidden(ORDER_ACCESS_REQUIRED, pointer="/data/order")
