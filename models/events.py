"""Events, the people who run them (roles) and the ticket types they sell."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, UTCDateTime, str_enum, utcnow
from models.users import Principal, User


class Role(enum.StrEnum):
    OWNER = "owner"
    ORGANIZER = "organizer"
    COORGANIZER = "coorganizer"


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(sa.String(64))
    location: Mapped[str | None] = mapped_column(sa.String(300))
    currency: Mapped[str] = mapped_column(sa.String(3), default="EUR")
    # The organizers' language (their notifications) and the default of the event's orders.
    locale: Mapped[str] = mapped_column(sa.String(35), default="en", server_default="en")
    # The seller its invoices name, and how they are taxed and paid; all optional (services/invoices.py).
    seller_name: Mapped[str | None] = mapped_column(sa.String(200))
    seller_address: Mapped[str | None] = mapped_column(sa.String(500))
    seller_country: Mapped[str | None] = mapped_column(sa.String(2))
    seller_vat_id: Mapped[str | None] = mapped_column(sa.String(32))
    tax_rate: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), default=Decimal("0"), server_default="0")
    prices_include_tax: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    bank_details: Mapped[str | None] = mapped_column(sa.String(1000))
    cheque_details: Mapped[str | None] = mapped_column(sa.String(1000))
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    roles: Mapped[list[EventRole]] = relationship(back_populates="event", cascade="all, delete-orphan")
    ticket_types: Mapped[list[TicketType]] = relationship(
        back_populates="event", order_by="TicketType.id", cascade="all, delete-orphan"
    )

    __table_args__ = (sa.CheckConstraint("ends_at >= starts_at", name="ends_after_start"),)


class EventRole(Base):
    __tablename__ = "event_roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(
        str_enum(Role, "role", 16)
    )

    event: Mapped[Event] = relationship(back_populates="roles")
    user: Mapped[User] = relationship()

    __table_args__ = (sa.UniqueConstraint("event_id", "user_id", "role", name="uq_event_roles_event_user_role"),)


class TicketType(Base):
    __tablename__ = "ticket_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("events.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    price: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    quantity: Mapped[int]

    event: Mapped[Event] = relationship(back_populates="ticket_types")

    __table_args__ = (
        sa.CheckConstraint("price >= 0", name="price_not_negative"),
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )


def has_role(session: Session, user: Principal, event_id: int, roles: frozenset[Role]) -> bool:
    if user.is_admin:
        return True
    found = session.scalar(
        sa.select(EventRole.id).where(
            EventRole.event_id == event_id, EventRole.user_id == user.id, EventRole.role.in_(roles)
        ).limit(1)
    )
    return found is not None


CO_ORGANIZER_ROLES = frozenset(Role)
ROLE_GRANTERS = frozenset({Role.OWNER, Role.ORGANIZER})


def is_coorganizer(session: Session, user: Principal, event_id: int) -> bool:
    """The contract's "co-organizer": an admin, or the event's owner, organizer or coorganizer."""
    return has_role(session, user, event_id, CO_ORGANIZER_ROLES)
