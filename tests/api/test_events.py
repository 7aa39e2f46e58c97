"""Events, ticket types and roles: who may create what, and what a bad body gets back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import only_error

EVENT = {"name": "PyCon DE", "starts_at": "2027-04-01T09:00:00+02:00", "ends_at": "2027-04-03T18:00:00+02:00",
         "timezone": "Europe/Berlin"}


def test_creating_an_event_makes_the_caller_its_owner(client: TestClient,
                                                      token_for: Callable[..., dict[str, str]]) -> None:
    alice = token_for("alice@example.org")
    response = client.post("/v1/events", json={**EVENT, "location": "Berlin"}, headers=alice)
    assert response.status_code == 201
    event = response.json()
    assert event["name"] == "PyCon DE" and event["currency"] == "EUR" and event["location"] == "Berlin"
    assert event["starts_at"].startswith("2027-04-01T07:00:00")  # stored in UTC
    # Owner: may add tickets and grant roles.
    ticket = client.post(f"/v1/events/{event['id']}/tickets", json={"name": "Standard", "price": "25.50",
                                                                     "quantity": 10}, headers=alice)
    assert ticket.status_code == 201
    assert ticket.json() == {"id": ticket.json()["id"], "event": event["id"], "name": "Standard",
                             "price": "25.50", "quantity": 10}
    role = client.post(f"/v1/events/{event['id']}/roles", json={"email": "Bob@Example.org", "role": "coorganizer"},
                       headers=alice)
    assert role.status_code == 201
    assert role.json()["email"] == "bob@example.org" and role.json()["role"] == "coorganizer"


def test_event_bodies_are_strict(client: TestClient, token_for: Callable[..., dict[str, str]]) -> None:
    alice = token_for("alice@example.org")
    cases = [
        ({**EVENT, "timezone": "Mars/Olympus"}, "/timezone"),
        ({**EVENT, "starts_at": "2027-04-01T09:00:00+05:00"}, "/starts_at"),  # not Berlin's offset
        ({**EVENT, "ends_at": "2027-03-01T09:00:00+00:00"}, "/ends_at"),
        ({**EVENT, "currency": "euro"}, "/currency"),
        ({**EVENT, "owner": 1}, "/owner"),
        ({**EVENT, "name": "a\x00b"}, "/name"),
        ({**EVENT, "starts_at": "0001-01-01T00:00:00+05:00"}, "/starts_at"),
        ({k: v for k, v in EVENT.items() if k != "name"}, "/name"),
    ]
    for body, pointer in cases:
        response = client.post("/v1/events", json=body, headers=alice)
        assert response.status_code == 422, body
        assert pointer in [e["source"]["pointer"] for e in response.json()["errors"]], response.json()


def test_ticket_types_need_a_co_organizer(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/v1/events/{world['event']}/tickets"
    ticket = {"name": "VIP", "price": "99.00", "quantity": 5}
    assert client.post(url, json=ticket, headers=world["headers"]["coorg"]).status_code == 201
    response = client.post(url, json=ticket, headers=world["headers"]["stranger"])
    assert response.status_code == 403
    assert only_error(response) == {"status": "403", "title": "Forbidden", "detail": "Co-Organizer Access Required",
                                    "source": {"parameter": "event_id"}}
    assert client.post("/v1/events/999999/tickets", json=ticket, headers=world["headers"]["coorg"]).status_code == 404
    for bad in ({**ticket, "price": 9.5}, {**ticket, "price": "-1"}, {**ticket, "quantity": -1}):
        assert client.post(url, json=bad, headers=world["headers"]["coorg"]).status_code == 422, bad
    assert client.post(url, json=ticket).status_code == 401


def test_roles_are_granted_by_owner_and_organizers_only(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/v1/events/{world['event']}/roles"
    grant = {"email": "new@example.org", "role": "organizer"}
    response = client.post(url, json=grant, headers=world["headers"]["coorg"])
    assert response.status_code == 403
    assert only_error(response)["detail"] == "Owner or Organizer Access Required"
    assert client.post(url, json=grant, headers=world["headers"]["owner"]).status_code == 201
    duplicate = client.post(url, json=grant, headers=world["headers"]["owner"])
    assert duplicate.status_code == 409
    assert client.post(url, json={**grant, "role": "owner"}, headers=world["headers"]["owner"]).status_code == 422
    assert client.post(url, json={**grant, "email": "nope"}, headers=world["headers"]["owner"]).status_code == 422


SELLER = {"seller_name": "PyCon Deutschland e.V.", "seller_address": "Musterstraße 12\n10115 Berlin",
          "seller_vat_id": "de 136 695 976", "tax_rate": "19", "prices_include_tax": False,
          "bank_details": "IBAN DE89 3704 0044 0532 0130 00", "cheque_details": "Payable to PyCon Deutschland e.V.",
          "contact_email": "tickets@pycon.example"}


def test_an_event_carries_its_seller_for_invoices(client: TestClient,
                                                   token_for: Callable[..., dict[str, str]]) -> None:
    response = client.post("/v1/events", json={**EVENT, **SELLER}, headers=token_for("alice@example.org"))
    assert response.status_code == 201, response.json()
    event = response.json()
    assert {k: event[k] for k in SELLER} == {**SELLER, "seller_vat_id": "DE136695976", "tax_rate": "19.00"}
    assert event["seller_country"] is None  # given later from the VAT ID on the invoice


def test_seller_fields_are_optional(client: TestClient, token_for: Callable[..., dict[str, str]]) -> None:
    event = client.post("/v1/events", json=EVENT, headers=token_for("alice@example.org")).json()
    assert (event["tax_rate"], event["prices_include_tax"], event["seller_vat_id"]) == ("0.00", True, None)


def test_a_bad_seller_field_is_a_422_with_its_pointer_and_creates_nothing(
        client: TestClient, token_for: Callable[..., dict[str, str]], db: Any) -> None:
    from sqlalchemy import func, select

    from models import Event

    alice = token_for("alice@example.org")
    cases = [
        ({"seller_vat_id": "DE136695977"}, "/seller_vat_id", "Not a valid VAT ID"),  # check digit off
        ({"seller_vat_id": "XX123"}, "/seller_vat_id", "Not a valid VAT ID"),
        ({"tax_rate": "19"}, "/seller_vat_id", "A tax rate above 0 needs the seller's VAT ID"),
        ({"tax_rate": "100"}, "/tax_rate", None),
        ({"tax_rate": "-5"}, "/tax_rate", None),
        ({"seller_country": "ZZ"}, "/seller_country", "Unknown country"),
        ({"contact_email": "not an address"}, "/contact_email", None),
        ({"bank_details": "IBAN\x00"}, "/bank_details", None),
        ({"seller_name": ""}, "/seller_name", None),
    ]
    for fields, pointer, detail in cases:
        response = client.post("/v1/events", json={**EVENT, **fields}, headers=alice)
        assert response.status_code == 422, fields
        errors = response.json()["errors"]
        assert pointer in [e["source"]["pointer"] for e in errors], errors
        assert detail is None or any(detail in e["detail"] for e in errors), errors
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
