"""Stored PDFs against the real database: reused across status changes, remade when the content changes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.deliveries import Document, DocumentKind
from models.ordering import change_status, load_order
from models.orders import Order
from models.status import OrderStatus
from tests.tasks.confirm_helpers import confirmed_order, pdf_text
from worker import pipeline
from worker.presenters import load_full_order
from worker.storage import find_document


def ensure_documents(db: sessionmaker[Session], identifier: str) -> bool:
    """Whether the order's PDFs had to be rendered (else the stored ones were reused)."""
    with db() as session:
        order = load_full_order(session, Order.identifier == identifier)
    return pipeline.ensure_documents(db, order)[1]


def paths(db: sessionmaker[Session], identifier: str) -> dict[str, object]:
    with db() as session:
        order = load_order(session, identifier)
        rows = session.scalars(sa.select(Document).where(Document.order_id == order.id)).all()
        return {"tickets": find_document(session, order, DocumentKind.TICKETS),
                "attendee": find_document(session, order, DocumentKind.ATTENDEE_TICKET, order.attendees[0].id),
                "revisions": {r.revision for r in rows}, "rows": len(rows), "revision": order.revision}


def test_a_status_change_keeps_the_pdfs_and_a_content_change_remakes_them(db: sessionmaker[Session]) -> None:
    identifier = confirmed_order(db, completed=False)
    assert paths(db, identifier)["tickets"] is None
    assert ensure_documents(db, identifier) is True
    placed = paths(db, identifier)
    assert placed["tickets"] is not None and placed["rows"] == 5 and placed["revisions"] == {placed["revision"]}

    with db() as session, session.begin():  # placed -> completed: a new revision, the same printed content
        change_status(session, load_order(session, identifier), OrderStatus.COMPLETED, by="owner@example.org")
    completed = paths(db, identifier)
    assert completed["revision"] != placed["revision"] and completed["tickets"] == placed["tickets"]
    assert ensure_documents(db, identifier) is False
    assert paths(db, identifier)["revisions"] == {completed["revision"]}

    with db() as session, session.begin():  # a changed attendee name is a changed ticket
        order = load_order(session, identifier)
        order.attendees[0].name = "Renamed Person"
        session.execute(sa.update(Order).where(Order.id == order.id).values(revision=Order.revision + 1))
    assert paths(db, identifier)["tickets"] is None
    assert ensure_documents(db, identifier) is True
    renamed = paths(db, identifier)
    assert renamed["tickets"] not in (None, placed["tickets"]) and renamed["rows"] == 5
    assert not placed["tickets"].exists()  # type: ignore[union-attr]
    assert "Renamed Person" in pdf_text(renamed["attendee"].read_bytes())  # type: ignore[union-attr]
