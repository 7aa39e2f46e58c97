"""The organizer order page: the HTML shell, and the JSON list behind it (co-organizers only, one query)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from models import EmailDelivery, EventRole, Role
from models.base import utcnow
from models.status import COLOURS, OrderStatus
from models.users import create_user_token
from tests.api.seeds import HOSTILE, seed_event


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_shell_is_served_without_auth_and_locks_scripts_to_self(client: TestClient) -> None:
    response = client.get("/events/42/orders")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert "/v1/events/42/orders" in html and "Resend" not in html.split("<body>")[0]
    assert "Only 5 resend actions are allowed in a minute." in html
    for asset in ("/pages/orders.js", "/pages/orders.css"):
        assert asset in html
        assert client.get(asset).status_code == 200
    assert client.get("/pages/secret.txt").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/events/{event_id}/orders" in paths and "/events/{event_id}/orders" not in paths


MARKED = re.compile(r"<(\w+)\b([^>]*\bdata-i18n=\"[^\"]*\"[^>]*)>(.*?)</\1>", re.S)
ATTRIBUTE = re.compile(r"""([\w-]+)=(?:"([^"]*)"|'([^']*)')""")
SLOT = re.compile(r"<(\w+) data-slot=\"(\w+)\">(.*?)</\1>", re.S)


def marked_texts(html: str) -> list[tuple[str, str]]:
    """(msgid, the English shown) of every element a page marks for session.js to translate: the
    msgid with its data-i18n-args and its data-slot children filled in must be exactly what shows."""
    found = []
    for _, attributes, inner in MARKED.findall(html):
        attrs = {name: unescape(double or single) for name, double, single in ATTRIBUTE.findall(attributes)}
        values = {name: str(value) for name, value in json.loads(attrs.get("data-i18n-args", "{}")).items()}
        values.update({name: unescape(text) for _, name, text in SLOT.findall(inner)})
        msgid = attrs["data-i18n"]
        expected = re.sub(r"%\((\w+)\)s", lambda m: values[m.group(1)], msgid)
        assert unescape(re.sub(r"<[^>]+>", "", inner)).strip() == expected, msgid
        found.append((msgid, expected))
    for attributes in re.findall(r"<input\b([^>]*\bdata-i18n-placeholder=[^>]*)>", html):
        attrs = {name: unescape(double or single) for name, double, single in ATTRIBUTE.findall(attributes)}
        assert attrs["placeholder"] == attrs["data-i18n-placeholder"]
        found.append((attrs["data-i18n-placeholder"], attrs["placeholder"]))
    return found


def test_the_pages_mark_their_texts_for_the_browsers_language(client: TestClient) -> None:
    """session.js translates what the shells mark (contract section 9): each marked text is a message
    every catalog translates, the statuses too, and the page says which languages there are."""
    pages = [client.get(url).text for url in ("/events/42/orders", "/events", "/login?token=unknown")]
    german = client.get("/v1/locales/de/messages").json()["messages"]
    for html in pages:
        assert '<html lang="en" dir="ltr" data-languages="en de fr es ja ar">' in html
        assert '<script src="/pages/session.js" defer></script>' in html
        marked = marked_texts(html)
        assert len(marked) >= 4
        untranslated = [msgid for msgid, _ in marked if msgid not in german]
        assert not untranslated, untranslated
    shown = dict(marked_texts(pages[0]))
    assert shown["Orders of event %(event)s · ticketq"] == "Orders of event 42 · ticketq"
    assert {status.value for status in OrderStatus} <= set(shown)  # the filter's options and the legend
    assert "Ask for a new one: ticketq login-link EMAIL" in dict(marked_texts(pages[2]))[
        "This sign-in link is unknown, already used or expired. Ask for a new one: %(command)s"]
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>',
                                  pages[0], re.S).group(1))
    assert config["limit"] == {"amount": 5, "multiples": 1, "unit": "minute"}  # the 429, in the page's language


def test_list_needs_a_valid_bearer_token(client: TestClient, db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    url = f"/v1/events/{seeded['event_id']}/orders"
    assert client.get(url).status_code == 401
    bad = client.get(url, headers=auth("not-a-token"))
    assert bad.status_code == 401
    assert bad.json()["errors"][0]["detail"]


def test_only_co_organizers_see_the_orders(client: TestClient, db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    url = f"/v1/events/{seeded['event_id']}/orders"
    with db() as s, s.begin():
        _, stranger = create_user_token(s, "stranger@example.org")
        helper, helper_token = create_user_token(s, "helper@example.org")
        s.add(EventRole(event_id=seeded["event_id"], user_id=helper.id, role=Role.COORGANIZER))
        _, admin = create_user_token(s, "root@example.org", admin=True)
    refused = client.get(url, headers=auth(stranger))
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["detail"] == "Co-Organizer Access Required"
    assert client.get(url, headers=auth(helper_token)).json()["total"] == 6
    assert client.get(url, headers=auth(admin)).json()["total"] == 6
    assert client.get("/v1/events/999/orders", headers=auth(admin)).status_code == 404
    assert client.get("/v1/events/999/orders", headers=auth(stranger)).status_code == 403


def test_list_shows_status_colour_buyer_amount_and_deliveries(client: TestClient, db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    body = client.get(f"/v1/events/{seeded['event_id']}/orders", headers=auth(seeded["token"])).json()
    assert body["event"]["name"] == "PyCon <Test>"
    assert (body["page"], body["per_page"], body["total"]) == (1, 50, 6)
    by_status = {o["status"]: o for o in body["orders"]}
    assert set(by_status) == {s.value for s in OrderStatus}
    for status, order in by_status.items():
        assert order["identifier"] == seeded["orders"][OrderStatus(status)]
        assert order["color"] == COLOURS[OrderStatus(status)]
        assert order["resendable"] == (status in ("placed", "completed"))
        assert (order["amount"], order["currency"]) == ("25.00", "EUR")
    assert HOSTILE in {o["buyer"]["name"] for o in body["orders"]}  # JSON carries it raw; the page shows text
    emails = by_status["completed"]["emails"]
    assert [(m["kind"], m["state"]) for m in emails] == [
        ("organizer-notification", "queued"), ("confirmation-attendee", "failed"), ("confirmation-buyer", "sent")]
    assert emails[1]["last_error"] == "550 no such user"
    assert by_status["placed"]["emails"] == []


def test_filter_by_status_and_paginate(client: TestClient, db: sessionmaker[Session]) -> None:
    seeded = seed_event(db)
    url, headers = f"/v1/events/{seeded['event_id']}/orders", auth(seeded["token"])
    placed = client.get(url, params={"status": "placed"}, headers=headers).json()
    assert [o["identifier"] for o in placed["orders"]] == [seeded["orders"][OrderStatus.PLACED]]
    assert placed["total"] == 1
    pages = [client.get(url, params={"page": n, "per_page": 4}, headers=headers).json() for n in (1, 2, 3)]
    assert [len(p["orders"]) for p in pages] == [4, 2, 0]
    assert [p["total"] for p in pages] == [6, 6, 6]
    seen = [o["identifier"] for p in pages for o in p["orders"]]
    assert sorted(seen) == sorted(seeded["orders"].values())
    assert client.get(url, params={"status": "bogus"}, headers=headers).status_code == 422
    assert client.get(url, params={"per_page": 1000}, headers=headers).status_code == 422


class StatementCounter:
    """Statements run on `engine`, as SQLAlchemy's cursor events see them."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.statements = engine, list[str]()

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)


def test_one_statement_per_page_however_many_orders_and_deliveries(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    from api.deps import _engines
    from core.settings import settings
    from models.db import get_engine
    from models.listing import list_event_orders

    seeded = seed_event(db)
    with db() as s, s.begin():
        ids = s.scalars(sa.text("SELECT id FROM orders")).all()
        for n in range(10):
            s.add_all(EmailDelivery(order_id=i, batch=f"resend-{n}", kind="confirmation-buyer",
                                    recipient="b@example.org") for i in ids)
    url, headers = f"/v1/events/{seeded['event_id']}/orders", auth(seeded["token"])
    with db() as s, StatementCounter(get_engine()) as counter:
        page = list_event_orders(s, seeded["event_id"], per_page=50)
    assert len(page.orders) == 6 and all(len(o["emails"]) >= 10 for o in page.orders)
    assert len(counter.statements) == 1, counter.statements
    reads, writes = _engines(settings.database_url)
    with StatementCounter(reads) as counter, StatementCounter(writes) as counted_too:
        assert client.get(url, headers=headers).status_code == 200
    counter.statements += counted_too.statements
    # token -> user with the co-organizer role, event name, then the page itself: constant, never per order.
    assert len(counter.statements) == 3, counter.statements
    touching = [st for st in counter.statements if "email_deliveries" in st or "FROM orders" in st]
    assert len(touching) == 1


def test_an_event_with_thousands_of_orders_pages_quickly(client: TestClient, db: sessionmaker[Session]) -> None:
    import time

    from models import Order

    seeded = seed_event(db)
    now = utcnow()
    with db() as s, s.begin():
        s.execute(sa.insert(Order), [
            {"identifier": f"bulk{n:06d}", "event_id": seeded["event_id"], "status": OrderStatus.COMPLETED,
             "currency": "EUR", "amount": 25, "buyer_name": f"Bulk {n}", "created_at": now - timedelta(seconds=n),
             "updated_at": now} for n in range(5000)])
        ids = s.scalars(sa.select(Order.id).where(Order.identifier.like("bulk%"))).all()
        s.execute(sa.insert(EmailDelivery), [
            {"order_id": i, "batch": "confirmation", "kind": kind, "recipient": "x@example.org", "state": "sent"}
            for i in ids for kind in ("confirmation-buyer", "organizer-notification")])
    url, headers = f"/v1/events/{seeded['event_id']}/orders", auth(seeded["token"])
    timings = {}
    for params in ({"page": 1}, {"page": 50, "per_page": 100}, {"status": "completed", "page": 25, "per_page": 200}):
        started = time.perf_counter()
        body = client.get(url, params=params, headers=headers).json()
        timings[str(params)] = elapsed = time.perf_counter() - started
        assert elapsed < 1.0, (params, elapsed)  # typically ~20 ms; generous for a shared CI machine
        assert len(body["orders"]) == body["per_page"]
        assert all(len(o["emails"]) == 2 for o in body["orders"] if o["identifier"].startswith("bulk"))
    assert body["total"] == 5001
    print(timings)


def test_the_page_query_runs_on_both_databases(any_db: sessionmaker[Session]) -> None:
    """The demo runs on SQLite: the window function and the deliveries join must work there too."""
    from models.listing import list_event_orders

    seeded = seed_event(any_db)
    with any_db() as s:
        first = list_event_orders(s, seeded["event_id"], per_page=4)
        last = list_event_orders(s, seeded["event_id"], page=2, per_page=4)
        beyond = list_event_orders(s, seeded["event_id"], page=9, per_page=4)
        completed = list_event_orders(s, seeded["event_id"], status=OrderStatus.COMPLETED)
    assert (len(first.orders), len(last.orders), len(beyond.orders)) == (4, 2, 0)
    assert first.total == last.total == beyond.total == 6
    assert first.orders[0]["created_at"].endswith("+00:00")
    assert [len(o["emails"]) for o in completed.orders] == [3] and completed.total == 1
