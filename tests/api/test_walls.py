"""Walls between events (contract section 5): "co-organizer" means a role on *this* order's event.

Two events, each with its own owner, organizer, coorganizer and buyer. Everyone of one event gets
403 on every action on the other event's orders, tickets, roles and order list, and 404 where the
thing does not exist at all; the other event's own people, doing the same, succeed, so each 403 is
about the event and not about the role. A role check that ignored the event fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import only_error

ROLES = ("owner", "organizer", "coorganizer")
OUTSIDERS = (*ROLES, "buyer")
RESEND = "/v1/orders/resend-email"
CO_ORGANIZER_403 = {"errors": [{"status": "403", "title": "Forbidden", "detail": "Co-Organizer Access Required",
                                "source": {"pointer": "/data/order"}}]}
UNKNOWN_ORDER = "f" * 32
UNKNOWN_EVENT = 999_999


@pytest.fixture
def two_events(db: sessionmaker[Session], token_for: Callable[..., dict[str, str]]) -> dict[str, Any]:
    """Events "a" and "b": per event its id, ticket type, people's headers and orders by status;
    each event's completed order has its PDFs stored."""
    from models.deliveries import DocumentKind
    from models.events import EventRole, Role
    from models.status import OrderStatus
    from services.storage import store_documents
    from tests.factories import make_event, make_order, make_user

    world: dict[str, Any] = {}
    with db() as session, session.begin():
        for side in ("a", "b"):
            event = make_event(session, name=f"Event {side.upper()}")
            for role in ROLES:
                person = make_user(session, f"{role}-{side}@example.org")
                session.add(EventRole(event_id=event.id, user_id=person.id, role=Role(role)))
            buyer = make_user(session, f"buyer-{side}@example.org")
            orders = {s.value: make_order(session, event, buyer, status=s)
                      for s in (OrderStatus.PLACED, OrderStatus.PENDING, OrderStatus.COMPLETED)}
            completed = orders["completed"]
            store_documents(session, completed, completed.revision, {
                (DocumentKind.TICKETS, None): b"%PDF-1.7 tickets", (DocumentKind.INVOICE, None): b"%PDF-1.7 invoice"})
            world[side] = {"event": event.id, "ticket": event.ticket_types[0].id,
                           "orders": {status: order.identifier for status, order in orders.items()}}
    for side in ("a", "b"):
        world[side]["headers"] = {who: token_for(f"{who}-{side}@example.org") for who in OUTSIDERS}
    return world


def actions(target: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    """Everything a co-organizer (or owner/organizer) may do to an event and its orders."""
    event, orders = target["event"], target["orders"]
    return {
        "read an order": ("GET", f"/v1/orders/{orders['completed']}", None),
        "download its tickets": ("GET", f"/v1/orders/{orders['completed']}/tickets.pdf", None),
        "download its invoice": ("GET", f"/v1/orders/{orders['completed']}/invoice.pdf", None),
        "resend its confirmation": ("POST", RESEND, {"data": {"order": orders["completed"]}}),
        "list the event's orders": ("GET", f"/v1/events/{event}/orders", None),
        "mark an order completed": ("PATCH", f"/v1/orders/{orders['pending']}", {"status": "completed"}),
        "cancel an order": ("PATCH", f"/v1/orders/{orders['placed']}", {"status": "cancelled"}),
        "add a ticket type": ("POST", f"/v1/events/{event}/tickets",
                              {"name": "VIP", "price": "99.00", "quantity": 5}),
        "grant a role": ("POST", f"/v1/events/{event}/roles", {"email": "new@example.org", "role": "coorganizer"}),
        "create an order with a status": ("POST", "/v1/orders", {
            "event": event, "tickets": [{"ticket": target["ticket"], "quantity": 1}], "status": "placed"}),
    }


def call(client: TestClient, action: tuple[str, str, dict[str, Any] | None], headers: dict[str, str]) -> Any:
    method, url, body = action
    return client.request(method, url, json=body, headers=headers)


def state(db: sessionmaker[Session], event_id: int) -> dict[str, Any]:
    """What a refused action must leave as it was: statuses, ticket types, roles, the jobs and
    history entries a request writes (not those of the session's worker, which may be confirming
    the seeded orders meanwhile when an earlier test has started it)."""
    from core.jobs import CANCELLATION_TASK, CONFIRM_TASK, RESEND_TASK
    from models.events import EventRole, TicketType
    from models.orders import Order, OrderEvent
    from models.outbox import OutboxJob

    with db() as session:
        return {
            "orders": sorted(session.execute(sa.select(Order.identifier, Order.status, Order.revision)
                                             .where(Order.event_id == event_id)).all()),
            "tickets": session.scalar(sa.select(sa.func.count()).where(TicketType.event_id == event_id)),
            "roles": session.scalar(sa.select(sa.func.count()).where(EventRole.event_id == event_id)),
            "jobs": session.scalar(sa.select(sa.func.count()).where(
                OutboxJob.task.in_((CONFIRM_TASK, CANCELLATION_TASK, RESEND_TASK)))),
            "history": session.scalar(sa.select(sa.func.count()).where(
                OrderEvent.kind.not_in(("email-sent", "email-failed", "resend-queued")))),
        }


@pytest.mark.parametrize(("intruders", "target"), [("b", "a"), ("a", "b")])
def test_the_people_of_one_event_get_403_on_everything_of_the_other(
    client: TestClient, two_events: dict[str, Any], db: sessionmaker[Session], intruders: str, target: str
) -> None:
    before = state(db, two_events[target]["event"])
    breaches = []
    for who in OUTSIDERS:
        headers = two_events[intruders]["headers"][who]
        for name, action in actions(two_events[target]).items():
            response = call(client, action, headers)
            if response.status_code != 403:
                breaches.append(f"{who} of event {intruders} may {name} of event {target}: {response.status_code}")
                continue
            only_error(response)
            if name == "resend its confirmation":
                assert response.json() == CO_ORGANIZER_403
            if name == "list the event's orders":
                assert only_error(response)["detail"] == "Co-Organizer Access Required"
    assert not breaches, "the wall between the events has holes:\n" + "\n".join(breaches)
    assert state(db, two_events[target]["event"]) == before, "a refused action changed something"


@pytest.mark.parametrize("side", ["a", "b"])
def test_the_events_own_people_may_do_each_of_those(
    client: TestClient, two_events: dict[str, Any], side: str
) -> None:
    """The other half of the wall: the same requests succeed for the event's own co-organizers."""
    own = two_events[side]["headers"]
    todo = actions(two_events[side])
    # Any of the three roles passes the co-organizer rule; each one is used for some action.
    expected = {"read an order": ("coorganizer", 200), "download its tickets": ("organizer", 200),
                "download its invoice": ("owner", 200), "resend its confirmation": ("coorganizer", 202),
                "list the event's orders": ("organizer", 200), "mark an order completed": ("coorganizer", 200),
                "cancel an order": ("owner", 200), "add a ticket type": ("coorganizer", 201),
                "grant a role": ("organizer", 201), "create an order with a status": ("coorganizer", 201)}
    assert set(expected) == set(todo)
    for name, (who, status) in expected.items():
        response = call(client, todo[name], own[who])
        assert response.status_code == status, (name, who, response.text[:300])
    listed = client.get(f"/v1/events/{two_events[side]['event']}/orders", headers=own["owner"]).json()
    other = "b" if side == "a" else "a"
    identifiers = {o["identifier"] for o in listed["orders"]}
    assert set(two_events[side]["orders"].values()) <= identifiers
    assert identifiers.isdisjoint(two_events[other]["orders"].values()), "the list shows the other event's orders"
    # The coorganizer runs the event but does not grant roles (owner and organizers do).
    refused = client.post(f"/v1/events/{two_events[side]['event']}/roles",
                          json={"email": "x@example.org", "role": "organizer"}, headers=own["coorganizer"])
    assert refused.status_code == 403 and only_error(refused)["detail"] == "Owner or Organizer Access Required"


def test_a_buyer_reads_and_downloads_only_their_own_order(client: TestClient, two_events: dict[str, Any]) -> None:
    for side, other in (("a", "b"), ("b", "a")):
        buyer = two_events[side]["headers"]["buyer"]
        mine, theirs = two_events[side]["orders"]["completed"], two_events[other]["orders"]["completed"]
        for suffix in ("", "/tickets.pdf", "/invoice.pdf"):
            assert client.get(f"/v1/orders/{mine}{suffix}", headers=buyer).status_code == 200, suffix
            assert client.get(f"/v1/orders/{theirs}{suffix}", headers=buyer).status_code == 403, suffix


def test_what_does_not_exist_is_404_for_the_outsiders_too(client: TestClient, two_events: dict[str, Any]) -> None:
    """Unknown order: 404 before any access check (the resend's check order: 404, then 403);
    unknown event: 404 for ticket types and roles. Only the order list answers an outsider 403
    for an unknown event, as for a known one: it tells nobody which event ids exist."""
    for who in ROLES:
        headers = two_events["b"]["headers"][who]
        for method, url, body in (
            ("GET", f"/v1/orders/{UNKNOWN_ORDER}", None),
            ("GET", f"/v1/orders/{UNKNOWN_ORDER}/tickets.pdf", None),
            ("GET", f"/v1/orders/{UNKNOWN_ORDER}/invoice.pdf", None),
            ("PATCH", f"/v1/orders/{UNKNOWN_ORDER}", {"status": "cancelled"}),
            ("POST", RESEND, {"data": {"order": UNKNOWN_ORDER}}),
        ):
            response = client.request(method, url, json=body, headers=headers)
            assert response.status_code == 404, (who, method, url)
            # The order is named by the resend's body, elsewhere by the path (issue 34's source shapes).
            source = {"pointer": "/data/order"} if url == RESEND else {"parameter": "identifier"}
            assert only_error(response) == {"status": "404", "title": "Not Found", "detail": "Order not found",
                                            "source": source}
        for url, body in ((f"/v1/events/{UNKNOWN_EVENT}/tickets", {"name": "X", "price": "1.00", "quantity": 1}),
                          (f"/v1/events/{UNKNOWN_EVENT}/roles", {"email": "x@example.org", "role": "organizer"})):
            assert client.post(url, json=body, headers=headers).status_code == 404, (who, url)
        assert client.get(f"/v1/events/{UNKNOWN_EVENT}/orders", headers=headers).status_code == 403


def test_an_order_for_one_event_cannot_take_the_other_events_tickets(
    client: TestClient, two_events: dict[str, Any], db: sessionmaker[Session]
) -> None:
    before = state(db, two_events["a"]["event"])
    for who in ("buyer", "coorganizer"):
        response = client.post("/v1/orders", headers=two_events["a"]["headers"][who], json={
            "event": two_events["a"]["event"], "tickets": [{"ticket": two_events["b"]["ticket"], "quantity": 1}]})
        assert response.status_code in (404, 422), (who, response.status_code, response.text[:200])
    assert state(db, two_events["a"]["event"]) == before
