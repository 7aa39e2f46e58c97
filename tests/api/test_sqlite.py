"""The demo runs the API on SQLite: the main flow works there too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker


def test_order_flow_on_sqlite(sqlite_db: sessionmaker[Session], app_with_limits: Callable[..., FastAPI],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings
    from models.users import create_user_token

    url = str(sqlite_db.kw["bind"].url)
    monkeypatch.setattr(settings, "database_url", url)
    with sqlite_db() as session, session.begin():
        owner = {"Authorization": f"Bearer {create_user_token(session, 'owner@example.org')[1]}"}
        buyer = {"Authorization": f"Bearer {create_user_token(session, 'buyer@example.org')[1]}"}
    with TestClient(app_with_limits()) as client:
        event = client.post("/v1/events", headers=owner, json={
            "name": "Demo", "starts_at": "2027-01-01T10:00:00+01:00", "ends_at": "2027-01-01T18:00:00+01:00",
            "timezone": "Europe/Paris"}).json()
        ticket = client.post(f"/v1/events/{event['id']}/tickets", headers=owner,
                             json={"name": "Std", "price": "10.00", "quantity": 1}).json()
        order = client.post("/v1/orders", headers=buyer, json={
            "event": event["id"], "tickets": [{"ticket": ticket["id"], "quantity": 1}]}).json()
        sold_out = client.post("/v1/orders", headers=buyer, json={
            "event": event["id"], "tickets": [{"ticket": ticket["id"], "quantity": 1}]})
        assert sold_out.status_code == 409
        submitted = client.patch(f"/v1/orders/{order['identifier']}", headers=buyer, json={
            "payment_mode": "cheque", "buyer": {"name": "B", "email": "b@example.org"},
            "attendees": [{"name": "B", "email": "b@example.org"}]})
        assert submitted.status_code == 200 and submitted.json()["status"] == "placed"
        resend: Any = client.post("/v1/orders/resend-email", headers=owner,
                                  json={"data": {"order": order["identifier"]}})
        assert resend.status_code == 202
        assert client.get("/healthz").json()["database"] == "ok"


def test_idempotency_keys_on_sqlite(sqlite_db: sessionmaker[Session], app_with_limits: Callable[..., FastAPI],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's database replays keyed answers too, for sessions and for the resend route's connection."""
    from core.settings import settings
    from models.users import create_user_token

    monkeypatch.setattr(settings, "database_url", str(sqlite_db.kw["bind"].url))
    with sqlite_db() as session, session.begin():
        owner = {"Authorization": f"Bearer {create_user_token(session, 'owner@example.org')[1]}"}
    event_body = {"name": "Demo", "starts_at": "2027-01-01T10:00:00+01:00", "ends_at": "2027-01-01T18:00:00+01:00",
                  "timezone": "Europe/Paris"}
    with TestClient(app_with_limits()) as client:
        first = client.post("/v1/events", headers={**owner, "Idempotency-Key": "e"}, json=event_body)
        again = client.post("/v1/events", headers={**owner, "Idempotency-Key": "e"}, json=event_body)
        assert first.status_code == again.status_code == 201 and first.content == again.content
        assert again.headers["idempotent-replayed"] == "true"
        event = first.json()["id"]
        ticket = client.post(f"/v1/events/{event}/tickets", headers=owner,
                             json={"name": "Std", "price": "0.00", "quantity": 5}).json()
        order = client.post("/v1/orders", headers=owner, json={
            "event": event, "status": "completed", "tickets": [{"ticket": ticket["id"], "quantity": 1}]}).json()
        body = {"data": {"order": order["identifier"]}}
        resends = [client.post("/v1/orders/resend-email", headers={**owner, "Idempotency-Key": "r"}, json=body)
                   for _ in range(2)]
        assert [r.status_code for r in resends] == [202, 202] and resends[0].content == resends[1].content
        assert resends[1].headers["idempotent-replayed"] == "true"
        orders = client.get(f"/v1/events/{event}/orders", headers=owner).json()
        assert orders["total"] == 1
