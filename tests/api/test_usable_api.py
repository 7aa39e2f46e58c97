"""Issue 34: an API a new producer can use from /docs alone: a bearer scheme and enums in the schema,
local times read in the event's timezone, real currencies, pointers in the body's shape, a clear 415,
and the event reads (`GET /v1/events`, `GET /v1/events/{event_id}` with its ticket stock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import only_error

NY = {"name": "Jazz night", "starts_at": "2027-07-10T19:30:00", "ends_at": "2027-07-10T23:00:00",
      "timezone": "America/New_York"}


def test_docs_authorize_list_the_enums_and_only_each_route_s_errors(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearer"][
            "description"]}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            # The languages are reference data the sign-in page needs before anyone has a token.
            private = path.startswith("/v1") and not path.startswith("/v1/locales")
            assert (operation.get("security") == [{"bearer": []}]) == private, path
            assert "HTTPValidationError" not in str(operation["responses"]), path
    components = schema["components"]["schemas"]
    assert "bank" in components["PaymentMode"]["enum"] and "bitcoin" not in components["PaymentMode"]["enum"]
    assert components["OrderStatus"]["enum"] == ["initializing", "placed", "pending", "completed", "expired",
                                                  "cancelled"]
    errors = {(path, method): set(op["responses"]) for path, ops in schema["paths"].items()
              for method, op in ops.items()}
    assert errors[("/v1/orders/{identifier}", "get")] == {"200", "401", "403", "404", "503"}
    assert "429" in errors[("/v1/orders/resend-email", "post")] and "429" not in errors[("/v1/orders", "post")]
    assert {"400", "413", "415", "422"} <= errors[("/v1/events", "post")]
    assert client.get("/docs").status_code == 200


def test_a_local_time_is_read_in_the_event_s_timezone(client: TestClient,
                                                      token_for: Callable[..., dict[str, str]]) -> None:
    owner = token_for("tz@example.org")
    local = client.post("/v1/events", json=NY, headers=owner)
    assert local.status_code == 201, local.json()
    assert local.json()["starts_at"].startswith("2027-07-10T23:30:00")  # EDT is UTC-4
    for agreeing in ("2027-07-10T19:30:00-04:00", "2027-07-10T23:30:00Z", "2027-07-10T23:30:00+00:00"):
        response = client.post("/v1/events", json={**NY, "starts_at": agreeing}, headers=owner)
        assert response.status_code == 201 and response.json()["starts_at"].startswith("2027-07-10T23:30:00")
    wrong = client.post("/v1/events", json={**NY, "starts_at": "2027-07-10T19:30:00+02:00"}, headers=owner)
    assert wrong.status_code == 422
    error = only_error(wrong)
    assert error["source"] == {"pointer": "/starts_at"} and "America/New_York" in error["detail"]
    gap = client.post("/v1/events", json={**NY, "starts_at": "2027-03-14T02:30:00", "ends_at": "2027-03-14T05:00:00"},
                      headers=owner)
    assert gap.status_code == 422 and "does not exist" in only_error(gap)["detail"]


def test_currencies_are_iso_4217_and_past_events_are_refused(client: TestClient,
                                                             token_for: Callable[..., dict[str, str]]) -> None:
    owner = token_for("money@example.org")
    assert client.post("/v1/events", json={**NY, "currency": "USD"}, headers=owner).json()["currency"] == "USD"
    xyz = client.post("/v1/events", json={**NY, "currency": "XYZ"}, headers=owner)
    assert xyz.status_code == 422 and only_error(xyz)["source"] == {"pointer": "/currency"}
    assert only_error(xyz)["detail"].startswith("Unknown currency")
    past = client.post("/v1/events", json={**NY, "starts_at": "2020-05-01T10:00:00", "ends_at": "2020-05-01T12:00:00"},
                       headers=owner)
    assert past.status_code == 422
    assert only_error(past) == {"status": "422", "title": "Unprocessable Entity",
                                "detail": "An event cannot end in the past", "source": {"pointer": "/ends_at"}}


def test_pointers_follow_the_body_and_messages_are_plain(client: TestClient, world: dict[str, Any]) -> None:
    owner = world["headers"]["owner"]
    response = client.post("/v1/events", json={**NY, "name": "", "timezone": "Mars/Olympus"}, headers=owner)
    by_pointer = {e["source"]["pointer"]: e["detail"] for e in response.json()["errors"]}
    assert set(by_pointer) == {"/name", "/timezone"}
    assert not any("Value error" in detail for detail in by_pointer.values())
    assert by_pointer["/timezone"] == "Unknown IANA timezone (e.g. Europe/Berlin)"
    bad_mail = client.post(f"/v1/events/{world['event']}/roles", json={"email": "nope", "role": "organizer"},
                           headers=owner)
    assert only_error(bad_mail)["source"] == {"pointer": "/email"}
    assert not only_error(bad_mail)["detail"].startswith("Value error")
    missing = client.get(f"/v1/orders/{'f' * 32}", headers=owner)
    assert missing.status_code == 404 and only_error(missing)["source"] == {"parameter": "identifier"}
    no_event = client.post("/v1/events/999999/tickets", json={"name": "x", "price": "1.00", "quantity": 1},
                           headers=world["headers"]["admin"])
    assert no_event.status_code == 404 and only_error(no_event)["source"] == {"parameter": "event_id"}
    no_such = client.post("/v1/orders", json={"event": 999999, "tickets": [{"ticket": 1, "quantity": 1}]},
                          headers=owner)
    assert no_such.status_code == 404 and only_error(no_such)["source"] == {"pointer": "/event"}


def test_a_body_that_is_not_json_is_415(client: TestClient, world: dict[str, Any]) -> None:
    owner = world["headers"]["owner"]
    import json

    text = client.post("/v1/events", content=json.dumps(NY), headers={**owner, "Content-Type": "text/plain"})
    assert text.status_code == 415
    assert only_error(text)["title"] == "Unsupported Media Type" and "application/json" in only_error(text)["detail"]
    form = client.patch(f"/v1/orders/{world['orders']['placed']}", content="status=cancelled",
                        headers={**owner, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    bare = client.post("/v1/events", content=json.dumps(NY), headers=owner)
    assert bare.status_code == 415 and "without Content-Type" in only_error(bare)["detail"]
    assert client.post("/v1/events", json=NY, headers=owner).status_code == 201
    empty = client.post("/v1/events", headers=owner)  # no body at all: the body is missing, not of a wrong type
    assert empty.status_code == 422
    # The resend body is read as JSON whatever its type (contract: `curl -d` has always worked there).
    curl = client.post("/v1/orders/resend-email", content=json.dumps({"data": {"order": world["orders"]["placed"]}}),
                       headers={**owner, "Content-Type": "application/x-www-form-urlencoded"})
    assert curl.status_code == 202


def test_the_events_a_caller_runs_page_by_page(client: TestClient, world: dict[str, Any],
                                               token_for: Callable[..., dict[str, str]]) -> None:
    owner = world["headers"]["owner"]
    second = client.post("/v1/events", json=NY, headers=owner).json()
    mine = client.get("/v1/events", headers=owner).json()
    assert (mine["total"], mine["page"]) == (2, 1)
    assert [e["id"] for e in mine["events"]] == [second["id"], world["event"]]  # latest start first
    assert mine["events"][1]["roles"] == ["owner"] and mine["events"][1]["timezone"] == "Europe/Berlin"
    assert client.get("/v1/events", headers=world["headers"]["coorg"]).json()["events"][0]["roles"] == ["coorganizer"]
    assert client.get("/v1/events", headers=world["headers"]["stranger"]).json() == {
        "events": [], "page": 1, "per_page": 50, "total": 0}
    paged = client.get("/v1/events", params={"page": 2, "per_page": 1}, headers=owner).json()
    assert [e["id"] for e in paged["events"]] == [world["event"]] and paged["total"] == 2
    assert client.get("/v1/events", headers=world["headers"]["admin"]).json()["total"] >= 2
    bad = client.get("/v1/events", params={"per_page": 0}, headers=owner)
    assert bad.status_code == 422 and only_error(bad)["source"] == {"parameter": "per_page"}


def test_one_event_with_its_tickets_sold_held_and_left(client: TestClient, world: dict[str, Any]) -> None:
    url = f"/v1/events/{world['event']}"
    event = client.get(url, headers=world["headers"]["coorg"])
    assert event.status_code == 200
    body = event.json()
    assert body["name"] == "PyCon Test" and body["roles"] == ["coorganizer"]
    standard, free = body["tickets"]
    # The world's four orders of two tickets each: placed and completed sell, initializing and pending hold.
    assert (standard["name"], standard["quantity"], standard["sold"], standard["held"], standard["left"]) == (
        "Standard", 100, 4, 4, 92)
    assert (free["sold"], free["held"], free["left"], free["price"]) == (0, 0, 10, "0.00")
    stranger = client.get(url, headers=world["headers"]["stranger"])
    assert stranger.status_code == 403 and only_error(stranger)["source"] == {"parameter": "event_id"}
    assert client.get("/v1/events/999999", headers=world["headers"]["admin"]).status_code == 404
    assert client.get(url).status_code == 401


def test_event_creators_admins_keeps_event_creation_to_admins(client: TestClient, world: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings

    assert settings.event_creators == "anyone"
    monkeypatch.setattr(settings, "event_creators", "admins")
    refused = client.post("/v1/events", json=NY, headers=world["headers"]["buyer"])
    assert refused.status_code == 403 and "EVENT_CREATORS=admins" in only_error(refused)["detail"]
    assert client.post("/v1/events", json=NY, headers=world["headers"]["admin"]).status_code == 201
