"""How long an order holds its tickets, as the contract's literal numbers (section 4): an
`initializing` order 900 s from its creation, a `pending` one 1800 s from its submission. Nothing
here is computed from the settings, so changing a default (or the deadline code) fails here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

INITIALIZING_SECONDS = 900
PENDING_SECONDS = 1800
ADA = {"name": "Ada", "email": "ada@example.org"}
FORM = {"buyer": ADA, "attendees": [ADA]}


def now() -> datetime:
    return datetime.now(UTC)


def instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, text
    return moment


def within(moment: datetime, before: datetime, after: datetime, seconds: int) -> bool:
    """`moment` is `seconds` after some instant between `before` and `after` (whole-second slack for
    a timestamp stored or shown without its fraction)."""
    return before + timedelta(seconds=seconds - 1) <= moment <= after + timedelta(seconds=seconds + 1)


def test_an_order_created_over_http_expires_900_s_later_and_1800_s_after_it_goes_pending(
    client: TestClient, world: dict[str, Any]
) -> None:
    buyer = world["headers"]["buyer"]
    before = now()
    created = client.post("/v1/orders", headers=buyer, json={
        "event": world["event"], "tickets": [{"ticket": world["tickets"][0], "quantity": 1}]})
    after = now()
    assert created.status_code == 201 and created.json()["status"] == "initializing"
    expires = instant(created.json()["expires_at"])
    assert within(expires, before, after, INITIALIZING_SECONDS), (before, expires)

    before = now()
    pending = client.patch(f"/v1/orders/{created.json()['identifier']}", headers=buyer,
                           json={**FORM, "payment_mode": "stripe"})
    after = now()
    assert pending.status_code == 200 and pending.json()["status"] == "pending"
    assert within(instant(pending.json()["expires_at"]), before, after, PENDING_SECONDS), pending.json()


def test_the_deadlines_are_900_and_1800_s_to_the_microsecond(db: sessionmaker[Session]) -> None:
    from models.expiration import expire_stale
    from models.placing import Person, submit_order
    from models.status import OrderStatus
    from models.transitions import load_order
    from tests.factories import make_event, make_order, make_user

    created_at = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    submitted_at = created_at + timedelta(seconds=100)
    with db() as session, session.begin():
        event, buyer = make_event(session), make_user(session)
        waiting = make_order(session, event, buyer, now=created_at)
        paying = make_order(session, event, buyer, now=created_at)
        submit_order(session, paying, payment_mode="stripe", buyer=Person("Ada", "ada@example.org"),
                     attendees=[Person("Ada", "ada@example.org")], by="ada@example.org", now=submitted_at)
        identifiers = waiting.identifier, paying.identifier
    with db() as session:
        waiting, paying = (load_order(session, i) for i in identifiers)
        assert waiting.status is OrderStatus.INITIALIZING and paying.status is OrderStatus.PENDING
        assert waiting.expires_at == created_at + timedelta(seconds=900)
        assert paying.expires_at == submitted_at + timedelta(seconds=1800)

    tick = timedelta(microseconds=1)
    assert expire_stale(db, now=created_at + timedelta(seconds=900) - tick) == {"initializing": 0, "pending": 0}
    assert expire_stale(db, now=created_at + timedelta(seconds=900)) == {"initializing": 1, "pending": 0}
    assert expire_stale(db, now=submitted_at + timedelta(seconds=1800) - tick) == {"initializing": 0, "pending": 0}
    assert expire_stale(db, now=submitted_at + timedelta(seconds=1800)) == {"initializing": 0, "pending": 1}
