"""Orders: create, submit the buyer's form, mark paid or cancel, read, download the PDFs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from api.deps import CurrentUser, DbSession, OrderLookup, closes_session
from api.error_documents import BODY_ERRORS, READ_ERRORS, error_responses
from api.permissions import COORGANIZER_REQUIRED, is_buyer, require_access, require_coorganizer
from api.publish import commit_and_publish
from api.schemas import OrderCreate, OrderPublic, OrderUpdate, PersonIn
from api.views import order_public
from models.access import Lookup
from models.deliveries import DocumentKind
from models.errors import Forbidden, InvalidInput, NotFound
from models.orders import Order
from models.placing import LineItem, Person, change_locale, create_order, submit_order
from models.status import Actor, OrderStatus, check_tickets_valid, parse_status
from models.transitions import change_status, load_order
from models.users import Principal
from services.files import find_document

router = APIRouter(prefix="/v1/orders", tags=["orders"])
BUYER_FORM = ("payment_mode", "buyer", "attendees")
PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The PDF"}, **error_responses(*READ_ERRORS, 403, 404)}


@router.post("", status_code=201, response_model=OrderPublic, responses=error_responses(*BODY_ERRORS, 403, 404, 409))
@closes_session
def create(body: OrderCreate, user: CurrentUser, session: DbSession) -> OrderPublic:
    """Reserve tickets; a co-organizer may create the order directly in a given status."""
    status = OrderStatus.INITIALIZING
    if body.status is not None:
        require_coorganizer(session, user, body.event, pointer="/data/status")
        status = parse_status(body.status)
    order = create_order(session, event_id=body.event, buyer=user, status=status, locale=body.locale,
                         items=[LineItem(line.ticket, line.quantity) for line in body.tickets])
    commit_and_publish(session)
    return order_public(session, order, new=True)


@router.patch("/{identifier}", response_model=OrderPublic, responses=error_responses(*BODY_ERRORS, 403, 404, 409))
@closes_session
def update(identifier: str, body: OrderUpdate, found: OrderLookup, session: DbSession) -> OrderPublic:
    """The buyer submits the form; a co-organizer changes the status (paid, cancelled). The
    language (`locale`) may come alone or with the form: the buyer's while the order is initializing
    or pending, the event's organizers' until it is cancelled or expired."""
    require_access(found)
    user = found.caller
    form = body.model_fields_set & set(BUYER_FORM)
    if body.status is not None and form:
        raise InvalidInput("Send either 'status' or the buyer's form, not both", pointer="/data/status")
    if body.status is not None and body.locale is not None:
        raise InvalidInput("Send 'status' alone, and 'locale' in a request of its own", pointer="/data/status")
    order = load_order(session, identifier, lock=True)
    if body.locale is not None:  # first, so the confirmation the form may queue is in the new language
        if not (is_buyer(user, order) or found.runs_event):
            raise Forbidden("Only the buyer or the event's organizers may change the order's locale",
                            pointer="/data/locale")
        change_locale(session, order, body.locale, by=user.email,
                      actor=Actor.ORGANIZER if found.runs_event else Actor.BUYER)
    if body.status is not None:
        if not found.runs_event:
            raise Forbidden(COORGANIZER_REQUIRED, pointer="/data/status")
        change_status(session, order, parse_status(body.status), by=user.email)
    elif form:
        _submit(session, order, user, body)
    elif body.locale is None:
        raise InvalidInput("Nothing to update: send 'status', the buyer's form (payment_mode, buyer, attendees) "
                           "or 'locale'", pointer="/data")
    commit_and_publish(session)
    return order_public(session, order)


def _submit(session: Session, order: Order, user: Principal, body: OrderUpdate) -> None:
    if not is_buyer(user, order):
        raise Forbidden("Only the buyer may submit the order form", pointer="/data")
    for field in BUYER_FORM:
        if getattr(body, field) is None:
            raise InvalidInput(f"Field required with the buyer's form: {field}", pointer=f"/data/{field}")
    assert body.payment_mode is not None and body.buyer is not None and body.attendees is not None
    submit_order(session, order, payment_mode=body.payment_mode.value, buyer=_person(body.buyer),
                 attendees=[_person(p) for p in body.attendees], by=user.email)


def _person(person: PersonIn) -> Person:
    return Person(name=person.name, email=str(person.email).lower())


@router.get("/{identifier}", response_model=OrderPublic, responses=error_responses(*READ_ERRORS, 403, 404))
@closes_session
def read(identifier: str, found: OrderLookup, session: DbSession) -> OrderPublic:
    require_access(found)
    return order_public(session, load_order(session, identifier))


@router.get("/{identifier}/tickets.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
@closes_session
def download_tickets(identifier: str, found: OrderLookup, session: DbSession) -> FileResponse:
    """Every ticket of the order, one page each (buyer or co-organizer); 410 once the order is
    cancelled or expired, its tickets void (the invoice stays downloadable)."""
    return _download(session, found, identifier, DocumentKind.TICKETS, "tickets")


@router.get("/{identifier}/invoice.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
@closes_session
def download_invoice(identifier: str, found: OrderLookup, session: DbSession) -> FileResponse:
    return _download(session, found, identifier, DocumentKind.INVOICE, "invoice")


@router.get("/{identifier}/credit-note.pdf", response_class=FileResponse, responses=PDF_RESPONSE)
@closes_session
def download_credit_note(identifier: str, found: OrderLookup, session: DbSession) -> FileResponse:
    """The credit note of a cancelled invoiced order (buyer or co-organizer)."""
    return _download(session, found, identifier, DocumentKind.CREDIT_NOTE, "credit-note")


def _download(session: Session, found: Lookup, identifier: str, kind: DocumentKind, name: str) -> FileResponse:
    """Serve what the worker rendered; never render inside a request."""
    require_access(found)
    order = load_order(session, identifier)
    if kind is not DocumentKind.INVOICE:
        check_tickets_valid(order.status)
    path = find_document(session, order, kind)
    if path is None:
        raise NotFound("Document not ready", pointer="/data/order")
    return FileResponse(path, media_type="application/pdf", filename=f"{name}-{order.identifier}.pdf")
