"""POST /v1/events/{event_id}/checkins: a valid ticket is admitted once, a void one never, and only
by the event's own co-organizers."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.checkins import CheckIn, check_in, format_code
from models.errors import Conflict
from models.expiration import expire_stale
from models.orders import Attendee, Order, OrderEvent
from tests.api.conftest import only_error

FORM = {"payment_mode": "bank", "buyer": {"name": "Ada", "email": "ada@example.org"},
        "attendees": [{"name": "Ada Lovelace", "email": "ada@example.org"},
                      {"name": "Bea Family", "email": "bea@example.org"}]}


def placed_order(client: TestClient, world: dict[str, Any]) -> str:
    """An order its buyer submitted by bank transfer: placed, its tickets issued."""
    created = client.post("/v1/orders", json={"event": world["event"], "tickets": [
        {"ticket": world["tickets"][0], "quantity": 2}]}, headers=world["headers"]["buyer"])
    identifier: str = created.json()["identifier"]
    submitted = client.patch(f"/v1/orders/{identifier}", json=FORM, headers=world["headers"]["buyer"])
    assert submitted.json()["status"] == "placed"
    return identifier


def tickets_of(db: sessionmaker[Session], identifier: str) -> list[Attendee]:
    with db() as session:
        return list(session.scalars(sa.select(Attendee).join(Order).where(Order.identifier == identifier)
                                    .order_by(Attendee.position)))


def checkin(client: TestClient, event: int, secret: str, headers: dict[str, str]) -> Any:
    return client.post(f"/v1/events/{event}/checkins", json={"secret": secret}, headers=headers)


def checkins(db: sessionmaker[Session]) -> int:
    with db() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(CheckIn)) or 0)


def test_a_ticket_is_admitted_once_then_refused_with_the_time_and_audited(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session]) -> None:
    identifier = placed_order(client, world)
    ada = tickets_of(db, identifier)[0]
    first = checkin(client, world["event"], ada.secret, world["headers"]["coorg"])
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["attendee"] == {"id": ada.id, "name": "Ada Lovelace", "email": "ada@example.org"}
    assert body["ticket"]["name"] == "Standard" and body["ticket"]["code"] == format_code(ada.code)
    assert (body["order"], body["event"], body["checked_in_by"]) == (identifier, world["event"], "coorg@example.org")

    again = checkin(client, world["event"], ada.secret, world["headers"]["owner"])
    assert again.status_code == 409
    error = only_error(again)
    assert error["detail"].startswith("Ticket already checked in at 20")
    assert error["detail"].endswith(("CET", "CEST"))  # the event's clock (Europe/Berlin), zone named
    assert error["source"] == {"pointer": "/secret"}
    assert checkins(db) == 1

    order = client.get(f"/v1/orders/{identifier}", headers=world["headers"]["owner"]).json()
    (entry,) = [h for h in order["history"] if h["kind"] == "checked-in"]
    assert entry["actor"] == "coorg@example.org"
    assert entry["detail"]["attendee"] == ada.id and entry["detail"]["ticket"] == "Standard"


def test_the_printed_code_is_accepted_as_typed(client: TestClient, world: dict[str, Any],
                                              db: sessionmaker[Session]) -> None:
    bea = tickets_of(db, placed_order(client, world))[1]
    assert bea.code is not None and len(bea.code) == 10
    typed = f" {format_code(bea.code).lower()} "  # any case, with its dash and stray spaces
    response = checkin(client, world["event"], typed, world["headers"]["owner"])
    assert response.status_code == 201, response.json()
    assert response.json()["attendee"]["name"] == "Bea Family"
    assert checkin(client, world["event"], bea.secret, world["headers"]["owner"]).status_code == 409


def test_a_cancelled_orders_tickets_are_void_at_the_door(client: TestClient, world: dict[str, Any],
                                                        db: sessionmaker[Session]) -> None:
    identifier = world["orders"]["completed"]
    cancelled = client.patch(f"/v1/orders/{identifier}", json={"status": "cancelled"},
                             headers=world["headers"]["owner"])
    assert cancelled.status_code == 200
    for ticket in tickets_of(db, identifier):
        for secret in (ticket.secret, format_code(ticket.code)):
            response = checkin(client, world["event"], secret, world["headers"]["coorg"])
            assert response.status_code == 410
            error = only_error(response)
            assert (error["title"], error["detail"]) == ("Gone", "This order was cancelled; its tickets are void")
    assert checkins(db) == 0
    history = client.get(f"/v1/orders/{identifier}", headers=world["headers"]["owner"]).json()["history"]
    assert [h["detail"].get("tickets") for h in history if h["kind"] == "cancelled"] == ["void"]


def test_an_expired_orders_tickets_are_void_too(client: TestClient, world: dict[str, Any],
                                                db: sessionmaker[Session]) -> None:
    identifier = world["orders"]["pending"]
    expire_stale(db, now=utcnow() + timedelta(days=1))
    secret = tickets_of(db, identifier)[0].secret
    response = checkin(client, world["event"], secret, world["headers"]["coorg"])
    assert response.status_code == 410
    assert only_error(response)["detail"] == "This order expired; its tickets are void"
    history = client.get(f"/v1/orders/{identifier}", headers=world["headers"]["owner"]).json()["history"]
    assert [h["detail"].get("tickets") for h in history if h["kind"] == "expired"] == ["void"]


def test_an_order_not_yet_submitted_has_no_ticket_to_admit(client: TestClient, world: dict[str, Any],
                                                           db: sessionmaker[Session]) -> None:
    secret = tickets_of(db, world["orders"]["initializing"])[0].secret
    response = checkin(client, world["event"], secret, world["headers"]["coorg"])
    assert response.status_code == 422
    assert only_error(response)["detail"] == "Ticket not issued: its order is initializing"


def test_unknown_codes_and_another_events_codes_are_not_found(
        client: TestClient, world: dict[str, Any], db: sessionmaker[Session], token_for: Any) -> None:
    other = client.post("/v1/events", json={"name": "Other", "starts_at": "2027-06-01T10:00:00+02:00",
                                            "ends_at": "2027-06-01T18:00:00+02:00", "timezone": "Europe/Berlin"},
                        headers=world["headers"]["stranger"]).json()["id"]
    ours = tickets_of(db, world["orders"]["completed"])[0]
    for secret in ("no-such-ticket", "ABCDE-FGHJK", ours.secret):
        response = checkin(client, other, secret, world["headers"]["stranger"])
        assert response.status_code == 404, secret
        assert only_error(response)["detail"] == "Unknown ticket for this event"
    # The wall: running another event gives no say over this one's tickets.
    response = checkin(client, world["event"], ours.secret, world["headers"]["stranger"])
    assert response.status_code == 403
    assert only_error(response)["detail"] == "Co-Organizer Access Required"
    assert checkin(client, world["event"], ours.secret, world["headers"]["buyer"]).status_code == 403
    assert checkins(db) == 0


@pytest.mark.parametrize("body", [{}, {"secret": ""}, {"secret": "   "}, {"secret": 7}, {"secret": "x" * 65},
                                  {"secret": "a\x00b"}, {"secret": "abc", "extra": 1}])
def test_a_bad_body_is_refused_and_changes_nothing(client: TestClient, world: dict[str, Any],
                                                   db: sessionmaker[Session], body: dict[str, Any]) -> None:
    response = client.post(f"/v1/events/{world['event']}/checkins", json=body, headers=world["headers"]["owner"])
    assert response.status_code == 422
    assert response.json()["errors"][0]["source"]["pointer"] in ("/secret", "/extra")
    assert checkins(db) == 0


def test_no_token_is_401_and_an_unknown_event_404_for_an_admin(client: TestClient, world: dict[str, Any]) -> None:
    assert checkin(client, world["event"], "x", {}).status_code == 401
    response = checkin(client, 999_999, "x", world["headers"]["admin"])
    assert response.status_code == 404 and only_error(response)["detail"] == "Event not found"


def test_two_concurrent_scans_of_one_ticket_admit_it_once(client: TestClient, world: dict[str, Any],
                                                          db: sessionmaker[Session]) -> None:
    """The first scan's insert is not committed yet when the second one runs: the second waits on the
    unique ticket, then finds it used."""
    ticket = tickets_of(db, placed_order(client, world))[0]
    outcomes: list[object] = []
    with db() as first:
        check_in(first, world["event"], ticket.secret, by="door-1@example.org")

        def second() -> None:
            with db() as session:
                try:
                    outcomes.append(check_in(session, world["event"], ticket.secret, by="door-2@example.org"))
                    session.commit()
                except Conflict as exc:
                    outcomes.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting on the first scan's row
        first.commit()
        thread.join(10)
    (refused,) = outcomes
    assert isinstance(refused, Conflict) and "already checked in" in refused.detail
    with db() as session:
        rows = session.scalars(sa.select(CheckIn)).all()
        audited = session.scalars(sa.select(OrderEvent).where(OrderEvent.kind == "checked-in")).all()
    assert [(r.attendee_id, r.checked_in_by) for r in rows] == [(ticket.id, "door-1@example.org")]
    assert len(audited) == 1
