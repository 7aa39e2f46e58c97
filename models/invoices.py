"""Invoices and credit notes: gapless numbers per seller and year, allocated once per order.

A number is taken from the seller's counter row for the year in the same transaction that records
the invoice: a rollback gives the number back, a commit keeps it for good, and the counter's row
lock makes two workers take turns. The unique constraints catch anything that slips past.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.settings import settings
from models.base import Base, UTCDateTime, str_enum, utcnow
from models.events import Event, Role
from models.orders import Order
from models.status import CONFIRMED, OrderStatus
from models.taxes import Item, Totals, compute
from models.transitions import lock_order


class InvoiceKind(enum.StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit-note"


class InvoiceSeries(Base):
    """The last number a seller issued in a year."""

    __tablename__ = "invoice_series"

    seller: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(default=0)


class Invoice(Base):
    """One issued document; its number and amounts never change once committed."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[InvoiceKind] = mapped_column(str_enum(InvoiceKind, "invoice_kind", 16))
    seller: Mapped[str] = mapped_column(sa.String(64))
    year: Mapped[int]
    sequence: Mapped[int]
    number: Mapped[str] = mapped_column(sa.String(40))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    net: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    tax: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    gross: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    # A credit note cites the invoice it cancels.
    cites_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"))

    __table_args__ = (
        sa.UniqueConstraint("seller", "year", "sequence", name="uq_invoices_seller_year_sequence"),
        sa.UniqueConstraint("order_id", "kind", name="uq_invoices_order_kind"),
    )


def seller_key(event: Event) -> str:
    """Numbers run per event owner (the organizer account that sells), else per event."""
    owner = next((r.user_id for r in event.roles if r.role is Role.OWNER), None)
    return f"user:{owner}" if owner is not None else f"event:{event.id}"


def order_totals(event: Event, priced: Sequence[tuple[str, int, Decimal]]) -> Totals:
    """(name, quantity, unit price) lines at the event's tax rate: what placing charges and invoices show."""
    items = [Item(name, quantity, price, event.tax_rate) for name, quantity, price in priced]
    return compute(items, prices_include_tax=event.prices_include_tax)


def owes_invoice(order: Order) -> bool:
    """A confirmed order with something to pay; a free one only when ZERO_INVOICES asks."""
    return order.status in CONFIRMED and (order.amount > 0 or settings.zero_invoices)


_series = cast(sa.Table, InvoiceSeries.__table__)
_OPEN_SERIES = {"postgresql": postgresql.insert(_series).on_conflict_do_nothing(),
                "sqlite": sqlite.insert(_series).on_conflict_do_nothing()}
_NEXT_NUMBER = (sa.update(_series)
                .where(_series.c.seller == sa.bindparam("key"), _series.c.year == sa.bindparam("for_year"))
                .values(last_number=_series.c.last_number + 1).returning(_series.c.last_number))


def next_number(session: Session, seller: str, year: int) -> int:
    """The seller's next number for the year; the row stays locked until the transaction ends."""
    session.execute(_OPEN_SERIES[session.get_bind().dialect.name], {"seller": seller, "year": year, "last_number": 0})
    return int(session.execute(_NEXT_NUMBER, {"key": seller, "for_year": year}).scalar_one())


def issue(session: Session, order: Order, kind: InvoiceKind, *, cites: Invoice | None = None,
          now: datetime | None = None) -> Invoice:
    now = now or utcnow()
    event = order.event
    seller, year = seller_key(event), now.astimezone(ZoneInfo(event.timezone)).year
    sequence = next_number(session, seller, year)
    source = cites or _totals_of(order)
    invoice = Invoice(order_id=order.id, kind=kind, seller=seller, year=year, sequence=sequence,
                      number=f"{settings.invoice_prefix}{year}-{sequence:06d}", issued_at=now,
                      net=source.net, tax=source.tax, gross=source.gross, cites_id=cites.id if cites else None)
    session.add(invoice)
    session.flush()
    return invoice


def _totals_of(order: Order) -> Totals:
    return order_totals(order.event, priced_lines(order))


def priced_lines(order: Order) -> list[tuple[str, int, Decimal]]:
    """(name, quantity, unit price) per ticket type, in the order the attendees were created."""
    lines: dict[int, tuple[str, int, Decimal]] = {}
    for attendee in order.attendees:
        ticket = attendee.ticket_type
        quantity = lines[ticket.id][1] if ticket.id in lines else 0
        lines[ticket.id] = (ticket.name, quantity + 1, ticket.price)
    return list(lines.values())


def order_invoices(session: Session, order_id: int) -> list[Invoice]:
    return list(session.scalars(sa.select(Invoice).where(Invoice.order_id == order_id).order_by(Invoice.id)))


def owes_more(order: Order, issued: Sequence[Invoice]) -> bool:
    """Whether the order is owed a document it was not issued yet: a cheap check before any lock."""
    kinds = {i.kind for i in issued}
    if InvoiceKind.INVOICE not in kinds:
        return owes_invoice(order)
    return order.status is OrderStatus.CANCELLED and InvoiceKind.CREDIT_NOTE not in kinds


def issue_owed(session: Session, order: Order, *, now: datetime | None = None) -> list[Invoice]:
    """The order's invoices, with those it is owed issued now: an invoice once it is confirmed, and a
    credit note citing it once it is cancelled. The order's row lock makes a second job wait and
    then find what the first issued, instead of numbering the same order twice."""
    lock_order(session, order.id)
    issued = order_invoices(session, order.id)
    kinds = {i.kind: i for i in issued}
    if InvoiceKind.INVOICE not in kinds and owes_invoice(order):
        issued.append(issue(session, order, InvoiceKind.INVOICE, now=now))
    original = kinds.get(InvoiceKind.INVOICE)
    if order.status is OrderStatus.CANCELLED and original and InvoiceKind.CREDIT_NOTE not in kinds:
        issued.append(issue(session, order, InvoiceKind.CREDIT_NOTE, cites=original, now=now))
    return issued
