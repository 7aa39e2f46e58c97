"""Orders, their attendees (one per ticket) and the audit trail of what happened to each."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, str_enum, utcnow
from models.events import Event, TicketType
from models.status import COLOURS, OrderStatus
from models.users import User


def new_identifier() -> str:
    return secrets.token_hex(16)


def new_secret() -> str:
    return secrets.token_urlsafe(24)


# Crockford's base32 (no I, L, O or U): a code read from paper or aloud at the door survives typing.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10  # 50 random bits: unguessable at any door, short enough to type


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    identifier: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_identifier)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, "order_status", 16)
    )
    payment_mode: Mapped[str | None] = mapped_column(sa.String(32))
    buyer_name: Mapped[str | None] = mapped_column(sa.String(200))
    buyer_email: Mapped[str | None] = mapped_column(sa.String(254))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    # What the buyer reads: every email and document of the order (core/locales.py).
    locale: Mapped[str] = mapped_column(sa.String(35), default="en", server_default="en")
    # Bumped on every change that shows on a document, so stored PDFs know when they are stale.
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[Event] = relationship()
    user: Mapped[User | None] = relationship()
    attendees: Mapped[list[Attendee]] = relationship(
        back_populates="order", order_by="Attendee.position", cascade="all, delete-orphan"
    )
    history: Mapped[list[OrderEvent]] = relationship(
        back_populates="order", order_by="OrderEvent.id", cascade="all, delete-orphan"
    )
    # models.invoices.Invoice rows (named, not imported: that module builds on this one), issued there
    # and never deleted with the order: accounts keep them.
    invoices: Mapped[list[Any]] = relationship("Invoice", order_by="Invoice.id", viewonly=True)

    __table_args__ = (
        sa.Index("ix_orders_status_expires_at", "status", "expires_at"),
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    @property
    def color(self) -> str:
        return COLOURS[self.status]


class Attendee(Base):
    __tablename__ = "attendees"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    ticket_type_id: Mapped[int] = mapped_column(sa.ForeignKey("ticket_types.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int]
    name: Mapped[str | None] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    secret: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_secret)
    # The ticket code printed under the QR code for manual entry; check-in accepts it like the secret.
    # Nullable only because SQLite cannot add a NOT NULL column in place; migration 0004 fills old rows.
    code: Mapped[str | None] = mapped_column(sa.String(16), unique=True, default=new_code)

    order: Mapped[Order] = relationship(back_populates="attendees")
    ticket_type: Mapped[TicketType] = relationship()


class OrderEvent(Base):
    """One row per thing that happened to an order: the audit trail shown on the order."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    actor: Mapped[str | None] = mapped_column(sa.String(254))
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="history")
