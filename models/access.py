"""The API's reads for its checks, each one statement: who calls (token → user), and with it the
order named in the request, its status and whether the caller runs the order's event."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from models.base import Base, UTCDateTime, utcnow
from models.events import EventRole
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


# Core on the tables, built once: SQLAlchemy's compiled cache finds it without an ORM compile step.
_users, _tokens, _orders, _roles = (Base.metadata.tables[m.__tablename__] for m in (User, ApiToken, Order, EventRole))
_ROLE = sa.exists().where(
    _roles.c.event_id == sa.func.coalesce(_orders.c.event_id, sa.bindparam("event_id", type_=sa.Integer)),
    _roles.c.user_id == _users.c.id)
_LOOKUP = (
    sa.select(_users.c.id, _users.c.email, _users.c.is_admin, _orders.c.id.label("order_id"), _orders.c.identifier,
              _orders.c.event_id, _orders.c.user_id.label("buyer_id"), _orders.c.status, _ROLE.label("has_role"))
    .select_from(_tokens.join(_users, _users.c.id == _tokens.c.user_id)
                 .outerjoin(_orders, _orders.c.identifier == sa.bindparam("identifier", type_=sa.String)))
    .where(_tokens.c.token_hash == sa.bindparam("token_hash", type_=sa.String),
           sa.or_(_tokens.c.expires_at.is_(None), _tokens.c.expires_at > sa.bindparam("now", type_=UTCDateTime)))
    .limit(1)
)


def lookup(conn: sa.Connection, token: str, *, identifier: str | None = None,
           event_id: int | None = None) -> Lookup | None:
    """The token's user, the order `identifier` (if any) and whether the user runs its event (or
    `event_id` when no order is named); None for an unknown or revoked token. One round trip."""
    params = {"token_hash": hash_token(token), "identifier": identifier, "event_id": event_id, "now": utcnow()}
    row = conn.execute(_LOOKUP, params).first()
    if row is None:
        return None
    caller = Caller(id=row.id, email=row.email, is_admin=bool(row.is_admin))
    order = None
    if row.order_id is not None:
        order = OrderFacts(id=row.order_id, identifier=row.identifier, event_id=row.event_id,
                           buyer_id=row.buyer_id, status=OrderStatus(row.status))
    return Lookup(caller, order, caller.is_admin or bool(row.has_role))


