"""The order as the API shows it: status and colour, people, documents, emails and the audit trail."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.schemas import (
    AttendeeOut,
    DocumentOut,
    EmailOut,
    HistoryOut,
    OrderPublic,
    PersonOut,
    decimal_string,
)
from models.deliveries import Document, DocumentKind, EmailDelivery
from models.history import history
from models.orders import Order

DOWNLOADS = {DocumentKind.TICKETS: "tickets.pdf", DocumentKind.INVOICE: "invoice.pdf",
             DocumentKind.CREDIT_NOTE: "credit-note.pdf"}


def order_public(session: Session, order: Order, *, new: bool = False) -> OrderPublic:
    """`new`: created by this request, so no document or email exists yet (two queries spared)."""
    return OrderPublic(
        identifier=order.identifier,
        event=order.event_id,
        status=order.status,
        color=order.color,
        amount=decimal_string(order.amount),
        currency=order.currency,
        payment_mode=order.payment_mode,
        locale=order.locale,
        expires_at=order.expires_at,
        buyer=PersonOut(name=order.buyer_name, email=order.buyer_email),
        attendees=[
            AttendeeOut(id=a.id, name=a.name, email=a.email, ticket=a.ticket_type_id, ticket_name=a.ticket_type.name)
            for a in order.attendees
        ],
        documents=[] if new else _documents(session, order),
        emails=[] if new else _emails(session, order),
        history=[HistoryOut(kind=h.kind, actor=h.actor, at=h.at, detail=h.detail) for h in history(order)],
    )


def _documents(session: Session, order: Order) -> list[DocumentOut]:
    rows = session.scalars(sa.select(Document).where(Document.order_id == order.id).order_by(Document.id))
    out = []
    for doc in rows:
        name = DOWNLOADS.get(doc.kind) if doc.attendee_id is None else None
        out.append(DocumentOut(
            kind=doc.kind.value, attendee_id=doc.attendee_id, revision=doc.revision, size=doc.size,
            created_at=doc.created_at, url=f"/v1/orders/{order.identifier}/{name}" if name else None,
        ))
    return out


def _emails(session: Session, order: Order) -> list[EmailOut]:
    rows = session.scalars(
        sa.select(EmailDelivery).where(EmailDelivery.order_id == order.id).order_by(EmailDelivery.id))
    return [
        EmailOut(kind=e.kind.value, recipient=e.recipient, state=e.state.value, batch=e.batch, attempts=e.attempts,
                 last_error=e.last_error, requested_by=e.requested_by, sent_at=e.sent_at)
        for e in rows
    ]
