"""Orders over HTTP: create, submit, mark paid, cancel, read, download; who may do which."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import only_error

FORM = {"payment_mode": "bank", "buyer": {"name": "Ada", "email": "ada@example.org"},
        "attendees": [{"name": "Ada", "email": "ada@example.org"}, {"name": "Bea", "email": "bea@example.org"}]}


def new_order(client: TestClient, world: dict[str, Any], who: str = "buyer", quantity: int = 2, **extra: Any) -> Any:
    return client.post("/v1/orders", json={"event": world["event"], "tickets": [
        {"ticket": world["tickets"][0], "quantity": quantity}], **extra}, headers=world["headers"][who])


def test_create_then_submit_then_mark_paid(client: TestClient, world: dict[str, Any]) -> None:
    created = new_order(client, world)
    assert created.status_code == 201
    order = created.json()
    assert order["status"] == "initializing" and order["color"] == "yellow" and order["expires_at"]
    assert order["amount"] == "50.00" and order["currency"] == "EUR" and len(order["attendees"]) == 2
    url = f"/v1/orders/{order['identifier']}"

    submitted = client.patch(url, json=FORM, headers=world["headers"]["buyer"])
    assert submitted.status_code == 200, submitted.json()
    body = submitted.json()
    assert (body["status"], body["color"], body["payment_mode"]) == ("placed", "blue", "bank")
    assert body["buyer"] == {"name": "Ada", "email": "ada@example.org"}
    assert [a["name"] for a in body["attendees"]] == ["Ada", "Bea"]
    assert {"id", "name", "email", "ticket"} <= set(body["attendees"][0])

    again = client.patch(url, json=FORM, headers=world["headers"]["buyer"])
    assert again.status_code == 403
    assert only_error(again)["detail"] == "You cannot update a non-initialized or non-pending order"

    paid = client.patch(url, json={"status": "completed"}, headers=world["headers"]["coorg"])
    assert paid.status_code == 200
    assert (paid.json()["status"], paid.json()["color"]) == ("completed", "green")
    kinds = [h["kind"] for h in paid.json()["history"]]
    assert kinds[0] == "created" and "submitted" in kinds and kinds[-1] == "completed"


def test_payment_mode_decides_the_status(client: TestClient, world: dict[str, Any]) -> None:
    for mode, status in (("stripe", "pending"), ("onsite", "placed")):
        identifier = new_order(client, world).json()["identifier"]
        response = client.patch(f"/v1/orders/{identifier}", json={**FORM, "payment_mode": mode},
                                headers=world["headers"]["buyer"])
        assert response.json()["status"] == status
    identifier = new_order(client, world).json()["identifier"]
    free = client.patch(f"/v1/orders/{identifier}", json={**FORM, "payment_mode": "free"},
                        headers=world["headers"]["buyer"])
    assert free.status_code == 422
    unknown = client.patch(f"/v1/orders/{identifier}", json={**FORM, "payment_mode": "bitcoin"},
                           headers=world["headers"]["buyer"])
    assert unknown.status_code == 422
    short = client.patch(f"/v1/orders/{identifier}", json={**FORM, "attendees": FORM["attendees"][:1]},
                         headers=world["headers"]["buyer"])
    assert short.status_code == 422 and only_error(short)["source"] == {"pointer": "/attendees"}
    partial = client.patch(f"/v1/orders/{identifier}", json={"payment_mode": "bank"},
                           headers=world["headers"]["buyer"])
    assert partial.status_code == 422 and only_error(partial)["source"] == {"pointer": "/buyer"}


def test_free_orders_complete_at_once(client: TestClient, world: dict[str, Any]) -> None:
    created = client.post("/v1/orders", json={"event": world["event"], "tickets": [
        {"ticket": world["tickets"][1], "quantity": 1}]}, headers=world["headers"]["buyer"]).json()
    response = client.patch(f"/v1/orders/{created['identifier']}",
                            json={**FORM, "payment_mode": "free", "attendees": FORM["attendees"][:1]},
                            headers=world["headers"]["buyer"])
    assert response.status_code == 200 and response.json()["status"] == "completed"


def test_sold_out_is_409(client: TestClient, world: dict[str, Any]) -> None:
    response = client.post("/v1/orders", json={"event": world["event"], "tickets": [
        {"ticket": world["tickets"][1], "quantity": 11}]}, headers=world["headers"]["buyer"])
    assert response.status_code == 409
    assert only_error(response) == {"status": "409", "title": "Conflict", "detail": "Tickets sold out",
                                    "source": {"pointer": "/tickets"}}


def test_only_co_organizers_create_with_a_status(client: TestClient, world: dict[str, Any]) -> None:
    refused = new_order(client, world, status="completed")
    assert refused.status_code == 403
    assert only_error(refused) == {"status": "403", "title": "Forbidden", "detail": "Co-Organizer Access Required",
                                   "source": {"pointer": "/status"}}
    placed = new_order(client, world, who="coorg", status="placed")
    assert placed.status_code == 201 and placed.json()["status"] == "placed"
    assert new_order(client, world, who="coorg", status="expired").status_code == 422
    assert new_order(client, world, who="coorg", status="bogus").status_code == 422


def test_bad_order_bodies(client: TestClient, world: dict[str, Any]) -> None:
    headers = world["headers"]["buyer"]
    cases = [
        ({"event": world["event"], "tickets": []}, 422),
        ({"event": world["event"], "tickets": [{"ticket": world["tickets"][0], "quantity": 0}]}, 422),
        ({"event": world["event"], "tickets": [{"ticket": world["tickets"][0], "quantity": 1, "x": 1}]}, 422),
        ({"event": 2**40, "tickets": [{"ticket": 1, "quantity": 1}]}, 422),
        ({"event": 999999, "tickets": [{"ticket": world["tickets"][0], "quantity": 1}]}, 404),
        ({"event": world["event"], "tickets": [{"ticket": 999999, "quantity": 1}]}, 404),
    ]
    for body, status in cases:
        assert client.post("/v1/orders", json=body, headers=headers).status_code == status, body


def test_co_organizer_moves(client: TestClient, world: dict[str, Any]) -> None:
    coorg, buyer = world["headers"]["coorg"], world["headers"]["buyer"]
    placed = f"/v1/orders/{world['orders']['placed']}"
    as_buyer = client.patch(placed, json={"status": "completed"}, headers=buyer)
    assert as_buyer.status_code == 403 and only_error(as_buyer)["detail"] == "Co-Organizer Access Required"
    cancelled = client.patch(placed, json={"status": "cancelled"}, headers=coorg)
    assert (cancelled.json()["status"], cancelled.json()["color"]) == ("cancelled", "grey")
    final = client.patch(placed, json={"status": "completed"}, headers=coorg)
    assert final.status_code == 422
    both = client.patch(f"/v1/orders/{world['orders']['pending']}", json={**FORM, "status": "completed"},
                        headers=coorg)
    assert both.status_code == 422
    nothing = client.patch(f"/v1/orders/{world['orders']['pending']}", json={}, headers=buyer)
    assert nothing.status_code == 422
    form_by_coorg = client.patch(f"/v1/orders/{world['orders']['pending']}", json=FORM, headers=coorg)
    assert form_by_coorg.status_code == 403


def test_reading_an_order_is_for_its_buyer_and_co_organizers(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/v1/orders/{world['orders']['completed']}"
    for who in ("buyer", "coorg", "owner", "admin"):
        response = client.get(url, headers=world["headers"][who])
        assert response.status_code == 200, who
        body = response.json()
        assert {"identifier", "status", "color", "amount", "currency", "payment_mode", "expires_at", "buyer",
                "attendees", "documents", "emails", "history"} <= set(body)
    stranger = client.get(url, headers=world["headers"]["stranger"])
    assert stranger.status_code == 403 and only_error(stranger)["source"] == {"parameter": "identifier"}
    for who in ("stranger", "admin"):
        missing = client.get(f"/v1/orders/{'f' * 32}", headers=world["headers"][who])
        assert missing.status_code == 404 and only_error(missing)["detail"] == "Order not found"
    assert client.get(url).status_code == 401
    assert client.patch(url, json={"status": "cancelled"}, headers=world["headers"]["stranger"]).status_code == 403


def test_downloads_serve_stored_pdfs_only(client: TestClient, world: dict[str, Any],
                                          db: sessionmaker[Session]) -> None:
    from models.deliveries import DocumentKind
    from models.orders import Order
    from services.storage import store_documents

    identifier = world["orders"]["completed"]
    url = f"/v1/orders/{identifier}"
    not_ready = client.get(f"{url}/tickets.pdf", headers=world["headers"]["buyer"])
    assert not_ready.status_code == 404 and only_error(not_ready)["detail"] == "Document not ready"
    with db() as session, session.begin():
        order = session.scalars(sa.select(Order).where(Order.identifier == identifier)).one()
        store_documents(session, order, order.revision, {(DocumentKind.TICKETS, None): b"%PDF-1.7 tickets",
                                                         (DocumentKind.INVOICE, None): b"%PDF-1.7 invoice"})
    for name, content in (("tickets.pdf", b"%PDF-1.7 tickets"), ("invoice.pdf", b"%PDF-1.7 invoice")):
        for who in ("buyer", "coorg"):
            response = client.get(f"{url}/{name}", headers=world["headers"][who])
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/pdf" and response.content == content
        assert client.get(f"{url}/{name}", headers=world["headers"]["stranger"]).status_code == 403
    documents = client.get(url, headers=world["headers"]["buyer"]).json()["documents"]
    assert {d["url"] for d in documents} == {f"{url}/tickets.pdf", f"{url}/invoice.pdf"}
    assert client.get(f"/v1/orders/{'f' * 32}/invoice.pdf", headers=world["headers"]["coorg"]).status_code == 404


def test_emails_show_kind_recipient_and_state(client: TestClient, world: dict[str, Any],
                                              db: sessionmaker[Session]) -> None:
    from models.deliveries import DeliveryState, EmailDelivery, EmailKind
    from models.orders import Order

    identifier = world["orders"]["completed"]
    with db() as session, session.begin():
        order = session.scalars(sa.select(Order).where(Order.identifier == identifier)).one()
        session.add(EmailDelivery(order_id=order.id, batch="confirmation", kind=EmailKind.CONFIRMATION_BUYER,
                                  recipient="ada@example.org", state=DeliveryState.SENT))
    emails = client.get(f"/v1/orders/{identifier}", headers=world["headers"]["buyer"]).json()["emails"]
    assert [(e["kind"], e["recipient"], e["state"]) for e in emails] == [
        ("confirmation-buyer", "ada@example.org", "sent")]


def test_every_endpoint_wants_a_token(client: TestClient, world: dict[str, Any]) -> None:
    order = f"/v1/orders/{world['orders']['placed']}"
    for method, url in (("POST", "/v1/events"), ("POST", f"/v1/events/{world['event']}/tickets"),
                        ("POST", f"/v1/events/{world['event']}/roles"), ("POST", "/v1/orders"),
                        ("PATCH", order), ("GET", order), ("GET", f"{order}/tickets.pdf"),
                        ("GET", f"{order}/invoice.pdf"), ("POST", "/v1/orders/resend-email")):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = client.request(method, url, json={}, headers=headers)
            assert response.status_code == 401, (method, url)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert only_error(response)["title"] == "Unauthorized"
