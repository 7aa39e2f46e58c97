"""Who gets which email of an order: one delivery row each, recorded before anything is sent, so a
job that runs twice finds what the first run recorded."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.base import utcnow
from models.deliveries import DeliveryState, EmailDelivery, EmailKind
from models.orders import Order
from models.users import normalize_email
from services.presenters import buyer_of

CONFIRMATION_BATCH = "confirmation"
CANCELLATION_BATCH = "cancellation"
PAYMENT_BATCH = "payment-received"
RESEND_PREFIX = "resend-"

_deliveries = cast(sa.Table, EmailDelivery.__table__)
# Built once (bound parameters): executing them again skips building them and SQLAlchemy's cache key walk.
_RECORD = {"postgresql": postgresql.insert(_deliveries).on_conflict_do_nothing(),  # ON CONFLICT is per dialect
           "sqlite": sqlite.insert(_deliveries).on_conflict_do_nothing()}
_BATCH = (sa.select(EmailDelivery).where(EmailDelivery.order_id == sa.bindparam("order_id", type_=sa.Integer),
                                         EmailDelivery.batch == sa.bindparam("batch", type_=sa.String))
          .order_by(EmailDelivery.id))


def confirmation_recipients(session: Session, order: Order, *, organizers: bool) -> list[tuple[EmailKind, str]]:
    """The buyer; each distinct attendee address other than the buyer's; each organizer address once."""
    buyer = normalize_email(buyer_of(order)[1])
    plan: list[tuple[EmailKind, str]] = [(EmailKind.CONFIRMATION_BUYER, buyer)] if buyer else []
    seen = {buyer}
    for attendee in order.attendees:
        address = normalize_email(attendee.email or "")
        if address and address not in seen:
            seen.add(address)
            plan.append((EmailKind.CONFIRMATION_ATTENDEE, address))
    if organizers:
        plan += organizer_notices(order)
    return plan


def organizer_notices(order: Order) -> list[tuple[EmailKind, str]]:
    """Each address of the event's owner, organizers and coorganizers once. The order was loaded with
    its event's roles and their users (load_full_order): no query here."""
    addresses = dict.fromkeys(sorted(normalize_email(r.user.email) for r in order.event.roles))
    return [(EmailKind.ORGANIZER_NOTIFICATION, address) for address in addresses]


def buyer_notice(order: Order, kind: EmailKind) -> list[tuple[EmailKind, str]]:
    buyer = normalize_email(buyer_of(order)[1])
    return [(kind, buyer)] if buyer else []


def ensure_deliveries(
    session: Session, order: Order, batch: str, plan: list[tuple[EmailKind, str]], *, requested_by: str | None = None
) -> list[EmailDelivery]:
    """Insert-if-absent on (order, batch, kind, recipient): a job that runs twice records each email once.
    One multi-row INSERT; the ids follow the plan's order, as its VALUES do."""
    if plan:
        now = utcnow()
        rows = [{"order_id": order.id, "batch": batch, "kind": kind, "recipient": recipient,
                 "state": DeliveryState.QUEUED, "attempts": 0, "requested_by": requested_by,
                 "created_at": now, "updated_at": now} for kind, recipient in plan]
        session.execute(_RECORD[session.get_bind().dialect.name], rows)
    return batch_deliveries(session, order, batch)


def batch_deliveries(session: Session, order: Order, batch: str) -> list[EmailDelivery]:
    return list(session.scalars(_BATCH, {"order_id": order.id, "batch": batch}))


def next_resend_batch(session: Session, order: Order) -> str:
    batches = session.scalars(sa.select(EmailDelivery.batch).where(
        EmailDelivery.order_id == order.id, EmailDelivery.batch.like(f"{RESEND_PREFIX}%")).distinct())
    numbers = [int(b.removeprefix(RESEND_PREFIX)) for b in batches if b.removeprefix(RESEND_PREFIX).isdigit()]
    return f"{RESEND_PREFIX}{max(numbers, default=0) + 1}"
