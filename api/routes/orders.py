"""Orders: create, submit the buyer's form, mark paid or cancel, read, download the PDFs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from api.access import find_order, is_buyer, require_coorganizer, require_order_access
from api.deps import CurrentUser, DbSession
from api.publish import commit_and_publish
from api.schemas import OrderCreate, OrderPublic, OrderUpdate, PersonIn
from api.views import order_public
from models.deliveries import DocumentKind
from models.errors import Forbidden, InvalidInput, NotFound
from models.ordering import LineItem, Person, change_status, create_order, submit_order
from models.orders import Order
from models.status import OrderStatus, parse_status
from models.users import User

router = APIRouter(prefix="/v1/orders", tags=["orders"])
BUYER_FORM = ("payment_mode", "buyer", "attendees")
PDF_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/pdf": {}}, "description": "The PDF"}}


@router.post("", status_code=201, response_model=OrderPublic)
def create(body: OrderCreate, user: CurrentUser, session: DbSession) -> OrderPublic:
    """Reserve tickets; a co-organizer may create the order directly in a given status."""
    status = OrderStatus.INITIALIZING
    if body.status is not None:
        require_coorganizer(session, user, body.event, pointer="/data/status")
        status = parse_status(body.status)
    order = create_order(session, event_id=body.event, buyer=user, status=status,
                         items=[LineItem(line.ticket, line.quantity) for line in body.tickets])
    commit_and_publish(session)
    return order_public(session, order)


@router.patch("/{identifier}", response_model=OrderPublic)
def update(identifier: str, body: OrderUpdate, user: CurrentUser, session: DbSession) -> OrderPublic:
    """The buyer submits the form; a co-organizer changes the status (paid, cancelled)."""
    order = find_order(session, identifier, lock=True)
    require_order_access(session, user, order)
    form = body.model_fields_set & set(BUYER_FORM)
    if body.status is not None and form:
        raise InvalidInput("Send either 'status' or the buyer's form, not both", pointer="/data/status")
    if body.status is not None:
        require_coorganizer(session, user, order.event_id, pointer="/data/status")
        change_status(session, order, parse_status(body.status), by=user.email)
    elif form:
        _submit(session, order, user, body)
    else:
        raise InvalidInput("Nothing to update: send 'status' or payment_mode, buyer and attendees", pointer="/data")
    commit_and_publish(session)
    return order_public(session, order)


def _submit(session: Session, order: Order, user: User, body: OrderUpdate) -> None:
    if not is_buyer(user, order):
        raise Forbidden("Only the buyer may submit the order form", pointer="/data")
    for field in BUYER_FORM:
        if getattr(body, field) is None:
            raise InvalidInput(f"Field required with the buyer's form: {field}", pointer=f"/data/{field}")
    assert body.payment_mode is not None and body.buyer is not None and body.attendees is not None
    submit_order(session, order, payment_mode=body.payment_mode, buyer=_person(body.buyer),
                 attendees=[_person(p) for p in body.attendees], by=user.email)


def _person(person: PersonIn) -> Person:
    return Person(name=person.name, email=str(person.email).lower())


@router.get("/{identifier}", response_model=OrderPublic)
def read(identifier: str, user: CurrentUser, session: DbSession) -> OrderPublic:
    order = find_order(session, identifier)
    require_order_access(session, user, order)
    return order_public(session, order)


@router.get("/{identifier}/tickets.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
def download_tickets(identifier: str, user: CurrentUser, session: DbSession) -> FileResponse:
    """Every ticket of the order, one page each (buyer or co-organizer)."""
    return _download(session, user, identifier, DocumentKind.TICKETS, "tickets")


@router.get("/{identifier}/invoice.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
def download_invoice(identifier: str, user: CurrentUser, session: DbSession) -> FileResponse:
    return _download(session, user, identifier, DocumentKind.INVOICE, "invoice")


def _download(session: Session, user: User, identifier: str, kind: DocumentKind, name: str) -> FileResponse:
    """Serve what the worker rendered; never render inside a request."""
    order = find_order(session, identifier)
    require_order_access(session, user, order)
    path = _stored_document(session, order, kind)
    if path is None:
        raise NotFound("Document not ready", pointer="/data/order")
    return FileResponse(path, media_type="application/pdf", filename=f"{name}-{order.identifier}.pdf")


def _stored_document(session: Session, order: Order, kind: DocumentKind) -> Path | None:
    from worker.storage import find_document  # the pipeline's storage knows paths and staleness

    return find_document(session, order, kind)
