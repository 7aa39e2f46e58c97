"""The organizer page's sign-in (a one-time link becomes a session cookie, CSRF-checked writes) and
its search and CSV export."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.logins import create_login_link
from models.orders import Order
from models.status import OrderStatus
from tests.api.test_pages import HOSTILE, auth, seed_event

ORIGIN = {"Origin": "http://testserver"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(db: sessionmaker[Session]) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app(), follow_redirects=False) as test_client:
        yield test_client


def link_for(db: sessionmaker[Session], email: str, **kwargs: Any) -> str:
    with db() as s, s.begin():
        return create_login_link(s, email, **kwargs)[1]


def sign_in(client: TestClient, token: str) -> Any:
    return client.post("/login", content=f"token={token}", headers={**FORM, **ORIGIN})


def page_config(client: TestClient, url: str) -> dict[str, Any]:
    html = client.get(url).text
    found = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html, re.S)
    assert found
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def test_a_link_signs_in_once_with_a_strict_http_only_cookie(client: TestClient, db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    token = link_for(db, "owner@example.org")
    shown = client.get("/login", params={"token": token})
    assert shown.status_code == 200 and "Sign in as owner@example.org" in shown.text
    assert "form-action 'self'" in shown.headers["content-security-policy"]
    signed = sign_in(client, token)
    assert signed.status_code == 303 and signed.headers["location"] == "/events"
    cookie = signed.headers["set-cookie"].lower()
    for flag in ("ticketq_session=", "httponly", "samesite=strict", "path=/", "max-age=43200"):
        assert flag in cookie, cookie
    listed = client.get(f"/v1/events/{seeded['event_id']}/orders")  # the cookie alone, no bearer header
    assert listed.status_code == 200 and listed.json()["total"] == 6
    assert client.get("/v1/events").json()["events"][0]["id"] == seeded["event_id"]

    again = sign_in(TestClient(client.app), token)
    assert again.status_code == 400 and "already used or expired" in again.text
    assert client.get("/login", params={"token": token}).status_code == 400


def test_an_expired_or_foreign_sign_in_is_refused(client: TestClient, db: sessionmaker[Session]) -> None:
    old = link_for(db, "owner@example.org", now=utcnow() - timedelta(minutes=16))
    assert sign_in(client, old).status_code == 400
    fresh = link_for(db, "owner@example.org")
    foreign = client.post("/login", content=f"token={fresh}", headers={**FORM, "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "ticketq_session" not in foreign.headers.get("set-cookie", "")
    assert sign_in(client, fresh).status_code == 303  # the refused attempt did not use the link up
    assert sign_in(client, "not-a-link").status_code == 400


def test_cookie_writes_need_the_page_s_csrf_token(client: TestClient, db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    sign_in(client, link_for(db, "owner@example.org"))
    placed = seeded["orders"][OrderStatus.PLACED]
    url = f"/v1/orders/{placed}"
    forged = client.patch(url, json={"status": "completed"})
    assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["errors"][0]["detail"]
    wrong = client.patch(url, json={"status": "completed"}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    with db() as s:
        assert s.scalar(sa.select(Order.status).where(Order.identifier == placed)) is OrderStatus.PLACED
    session = page_config(client, f"/events/{seeded['event_id']}/orders")["session"]
    assert session["cookie"] is True and session["csrfHeader"] == "X-CSRF-Token"
    paid = client.patch(url, json={"status": "completed"}, headers={"X-CSRF-Token": session["csrf"]})
    assert paid.status_code == 200 and paid.json()["status"] == "completed"
    resend = client.post("/v1/orders/resend-email", json={"data": {"order": placed}},
                         headers={"X-CSRF-Token": session["csrf"]})
    assert resend.status_code == 202

    assert client.post("/logout").status_code == 403  # signing out is a write too
    out = client.post("/logout", headers={"X-CSRF-Token": session["csrf"]})
    assert out.status_code == 204 and 'ticketq_session=""' in out.headers["set-cookie"]
    stale = TestClient(client.app, cookies={"ticketq_session": "x"})
    assert stale.get("/v1/events").status_code == 401


def test_a_session_expires_and_api_tokens_do_not(client: TestClient, db: sessionmaker[Session]) -> None:
    from models.users import ApiToken

    seeded = seed_event(db)
    sign_in(client, link_for(db, "owner@example.org"))
    assert client.get("/v1/events").status_code == 200
    with db() as s, s.begin():
        s.execute(sa.update(ApiToken).where(ApiToken.expires_at.is_not(None)).values(expires_at=utcnow()))
    assert client.get("/v1/events").status_code == 401
    assert client.get("/v1/events", headers=auth(seeded["token"])).status_code == 200


def test_search_by_buyer_name_email_or_order_code_and_export_csv(client: TestClient,
                                                                 db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    url, headers = f"/v1/events/{seeded['event_id']}/orders", auth(seeded["token"])
    with db() as s, s.begin():
        s.execute(sa.update(Order).where(Order.identifier == seeded["orders"][OrderStatus.PLACED])
                  .values(buyer_name="=HYPERLINK(\"http://evil\")", buyer_email="50%_off@example.org"))

    def found(q: str, **params: Any) -> list[str]:
        return [o["identifier"] for o in client.get(url, params={"q": q, **params}, headers=headers).json()["orders"]]

    assert found("buyer 3") == [seeded["orders"][OrderStatus.COMPLETED]]  # names are "Buyer <n>", any case
    assert found("BUYER2@EXAMPLE") == [seeded["orders"][OrderStatus.PENDING]]
    code = seeded["orders"][OrderStatus.EXPIRED]
    assert found(code[:6]) == [code]
    assert found("50%_") == [seeded["orders"][OrderStatus.PLACED]]  # LIKE wildcards are literal
    assert found("%") == [seeded["orders"][OrderStatus.PLACED]]
    assert found("buyer", status="completed") == [seeded["orders"][OrderStatus.COMPLETED]]
    assert client.get(url, params={"q": "a\x00"}, headers=headers).status_code == 422

    export = client.get(url + ".csv", params={"q": "example.org"}, headers=headers)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 6 and set(rows[0]) == {"order", "status", "buyer_name", "buyer_email", "amount", "currency",
                                               "payment_mode", "created_at"}
    by_order = {r["order"]: r for r in rows}
    assert by_order[seeded["orders"][OrderStatus.PLACED]]["buyer_name"].startswith("'=")  # never a formula
    assert HOSTILE in {r["buyer_name"] for r in rows}
    assert all(r["created_at"][-6:] in ("+01:00", "+02:00") for r in rows)  # Europe/Berlin, the event's zone
    only = client.get(url + ".csv", params={"status": "completed"}, headers=headers)
    assert [r["status"] for r in csv.DictReader(io.StringIO(only.text))] == ["completed"]
    assert client.get(url + ".csv").status_code == 401
