"""Stored PDFs against the real database: reused across status changes, remade when the content changes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from models.deliveries import Document, DocumentKind
from models.orders import Order
from models.status import OrderStatus
from models.transitions import change_status, load_order, lock_order
from services import pipeline
from services.presenters import load_full_order
from services.storage import DocumentKey, absolute, document_name, find_document, store_documents
from tests.tasks.confirm_helpers import confirmed_order, pdf_text


def ensure_documents(db: sessionmaker[Session], identifier: str) -> bool:
    """Whether the order's PDFs had to be rendered (else the stored ones were reused)."""
    with db() as session:
        order = load_full_order(session, Order.identifier == identifier)
    return pipeline.ensure_documents(db, order)[1] is not None


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

    with db() as session, session.begin():  # placed -> completed: the invoice now says "Paid"
        change_status(session, load_order(session, identifier), OrderStatus.COMPLETED, by="owner@example.org")
    assert paths(db, identifier)["tickets"] is None
    assert ensure_documents(db, identifier) is True
    completed = paths(db, identifier)
    assert completed["revision"] != placed["revision"] and completed["tickets"] not in (None, placed["tickets"])
    assert not placed["tickets"].exists()  # type: ignore[union-attr]

    with db() as session, session.begin():  # a new revision that prints nothing new: the PDFs are kept
        session.execute(sa.update(Order).where(Order.identifier == identifier).values(revision=Order.revision + 1))
    assert paths(db, identifier)["tickets"] == completed["tickets"]
    assert ensure_documents(db, identifier) is False
    assert paths(db, identifier)["revisions"] == {completed["revision"] + 1}

    with db() as session, session.begin():  # a changed attendee name is a changed ticket
        order = load_order(session, identifier)
        order.attendees[0].name = "Renamed Person"
        session.execute(sa.update(Order).where(Order.id == order.id).values(revision=Order.revision + 1))
    assert paths(db, identifier)["tickets"] is None
    assert ensure_documents(db, identifier) is True
    renamed = paths(db, identifier)
    assert renamed["tickets"] not in (None, completed["tickets"]) and renamed["rows"] == 5
    assert not completed["tickets"].exists()  # type: ignore[union-attr]
    assert "Renamed Person" in pdf_text(renamed["attendee"].read_bytes())  # type: ignore[union-attr]


def test_storing_replaces_the_orders_rows_with_one_per_document_on_both_databases(
        any_db: sessionmaker[Session]) -> None:
    identifier = confirmed_order(any_db, completed=False)
    with any_db() as session:
        order = load_full_order(session, Order.identifier == identifier)
    rendered: dict[DocumentKey, bytes] = {(DocumentKind.TICKETS, None): b"%PDF tickets",
                                          (DocumentKind.INVOICE, None): b"%PDF invoice!"}
    rendered.update({(DocumentKind.ATTENDEE_TICKET, a.id): b"%PDF " * (i + 1) for i, a in enumerate(order.attendees)})

    def store(fingerprint: str) -> set[tuple[object, ...]]:
        with any_db() as session, session.begin():
            lock_order(session, order.id)
            store_documents(session, order, order.revision, rendered, fingerprint)
        with any_db() as session:
            rows = session.scalars(sa.select(Document).where(Document.order_id == order.id)).all()
        assert len(rows) == len(rendered)
        return {(r.kind, r.attendee_id, r.path, r.revision, r.size) for r in rows}

    def expected(fingerprint: str) -> set[tuple[object, ...]]:
        return {(kind, attendee, document_name(identifier, kind, attendee, fingerprint), order.revision, len(data))
                for (kind, attendee), data in rendered.items()}

    assert store("first") == expected("first")
    assert store("first") == expected("first")  # stored again: replaced, not doubled
    assert store("second") == expected("second")
    assert all(absolute(path).read_bytes() == rendered[(kind, attendee)]  # type: ignore[index]
               for kind, attendee, path, *_ in expected("second"))
    assert not any(absolute(path).exists() for _, _, path, *_ in expected("first"))  # unreferenced: removed
