"""Records of what the worker produced for an order: stored documents and email deliveries."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, UTCDateTime, str_enum, utcnow
from models.orders import Order


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class EmailKind(enum.StrEnum):
    CONFIRMATION_BUYER = "confirmation-buyer"
    CONFIRMATION_ATTENDEE = "confirmation-attendee"
    ORGANIZER_NOTIFICATION = "organizer-notification"
    CANCELLATION = "cancellation"
    PAYMENT_RECEIVED = "payment-received"


class DocumentKind(enum.StrEnum):
    TICKETS = "tickets"
    ATTENDEE_TICKET = "attendee-ticket"
    INVOICE = "invoice"
    CREDIT_NOTE = "credit-note"


class EmailDelivery(Base):
    """One logical email; created before sending so a redelivered job can see it was sent."""

    __tablename__ = "email_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    # Groups the emails of one sending: "confirmation", "cancellation", "resend-<n>".
    batch: Mapped[str] = mapped_column(sa.String(40))
    kind: Mapped[EmailKind] = mapped_column(
        str_enum(EmailKind, "email_kind", 32)
    )
    recipient: Mapped[str] = mapped_column(sa.String(254))
    state: Mapped[DeliveryState] = mapped_column(
        str_enum(DeliveryState, "delivery_state", 16),
        default=DeliveryState.QUEUED,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    requested_by: Mapped[str | None] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("order_id", "batch", "kind", "recipient", name="uq_email_deliveries_logical"),
    )


class Document(Base):
    """A PDF stored under FILES_DIR for a given order revision; reused until the order changes."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    kind: Mapped[DocumentKind] = mapped_column(
        str_enum(DocumentKind, "document_kind", 32)
    )
    attendee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("attendees.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(sa.String(500))
    revision: Mapped[int]
    size: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship()
