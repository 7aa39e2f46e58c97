"""The API's reads for its checks, each one statement: who calls (token → user), and with it the
order named in the request, its status and whether the caller runs the order's event."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from models.events import Event, EventRole
from models.orders import Order
from models.status import OrderStatus
from models.users import ApiToken, Caller, User, hash_token


@dataclass(frozen=True)
class OrderFacts:
    """What the checks need of an order, read with the caller."""

    id: int
    identifier: str
    event_id: int
    buyer_id: int | None
    status: OrderStatus


@dataclass(frozen=True)
class Lookup:
    caller: Caller
    order: OrderFacts | None  # None: no such order (or none was asked for)
    runs_event: bool  # an admin, or a role on the order's (or the given) event: the contract's co-organizer


_ROLE = sa.exists().where(EventRole.event_id == sa.func.coalesce(Order.event_id, sa.bindparam("event_id")),
                          EventRole.user_id == User.id)
_LOOKUP = (
    sa.select(User.id, User.email, User.is_admin, Order.id.label("order_id"), Order.identifier,
              Order.event_id, Order.user_id.label("buyer_id"), Order.status, _ROLE.label("has_role"))
    .select_from(ApiToken)
    .join(User, User.id == ApiToken.user_id)
    .outerjoin(Order, Order.identifier == sa.bindparam("identifier"))
    .where(ApiToken.token_hash == sa.bindparam("token_hash"))
    .limit(1)
)


def lookup(conn: sa.Connection, token: str, *, identifier: str | None = None,
           event_id: int | None = None) -> Lookup | None:
    """The token's user, the order `identifier` (if any) and whether the user runs its event (or
    `event_id` when no order is named); None for an unknown or revoked token. One round trip."""
    row = conn.execute(_LOOKUP, {"token_hash": hash_token(token), "identifier": identifier,
                                 "event_id": event_id}).first()
    if row is None:
        return None
    caller = Caller(id=row.id, email=row.email, is_admin=bool(row.is_admin))
    order = None
    if row.order_id is not None:
        order = OrderFacts(id=row.order_id, identifier=row.identifier, event_id=row.event_id,
                           buyer_id=row.buyer_id, status=OrderStatus(row.status))
    return Lookup(caller, order, caller.is_admin or bool(row.has_role))


def event_exists(conn: sa.Connection, event_id: int) -> bool:
    return conn.scalar(sa.select(Event.id).where(Event.id == event_id)) is not None
