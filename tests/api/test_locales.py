"""Languages over HTTP (contract section 9): events and orders carry a locale, the buyer may change
it while the order is theirs, an unsupported one is a 422 naming the field and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import only_error
from tests.api.test_events import EVENT
from tests.api.test_orders import FORM, new_order


def test_the_supported_locales_are_listed_without_a_token(client: TestClient) -> None:
    body = client.get("/v1/locales").json()
    assert body["default"] == "en"
    tags = {item["tag"]: item for item in body["locales"]}
    assert {"en", "de", "fr", "es", "ja", "ar"} <= set(tags)
    assert tags["de"]["name"] == "Deutsch" and tags["ja"]["name"] == "日本語" and tags["ar"]["direction"] == "rtl"
    messages = client.get("/v1/locales/de-AT/messages").json()
    assert messages["tag"] == "de" and messages["messages"]["Invoice"] == "Rechnung"
    assert client.get("/v1/locales/en/messages").json()["messages"] == {}
    assert client.get("/v1/locales/xx/messages").status_code == 404


def test_an_event_s_locale_defaults_to_english_and_takes_a_region(
        client: TestClient, token_for: Callable[..., dict[str, str]]) -> None:
    alice = token_for("alice@example.org")
    assert client.post("/v1/events", json=EVENT, headers=alice).json()["locale"] == "en"
    created = client.post("/v1/events", json={**EVENT, "locale": "de_at"}, headers=alice).json()
    assert created["locale"] == "de-AT"  # canonical form
    assert client.get(f"/v1/events/{created['id']}", headers=alice).json()["locale"] == "de-AT"
    listed = client.get("/v1/events", headers=alice).json()["events"]
    assert {e["locale"] for e in listed} == {"en", "de-AT"}


def test_an_unsupported_locale_is_a_422_naming_the_field(
        client: TestClient, world: dict[str, Any], token_for: Callable[..., dict[str, str]]) -> None:
    alice = token_for("alice@example.org")
    before = client.get("/v1/events", headers=alice).json()["total"]
    for bad in ("xx", "zh", "de-XX", "", "de;DROP", "a" * 80):
        response = client.post("/v1/events", json={**EVENT, "locale": bad}, headers=alice)
        assert response.status_code == 422, bad
        assert "/locale" in [e["source"]["pointer"] for e in response.json()["errors"]], response.json()
        order = new_order(client, world, locale=bad)
        assert order.status_code == 422 and "/locale" in [e["source"]["pointer"] for e in order.json()["errors"]]
    assert "Unsupported locale 'xx': use one of en, de, fr, es, ja, ar" in only_error(
        client.post("/v1/events", json={**EVENT, "locale": "xx"}, headers=alice))["detail"]
    assert client.get("/v1/events", headers=alice).json()["total"] == before  # nothing was created
    identifier = world["orders"]["initializing"]
    refused = client.patch(f"/v1/orders/{identifier}", json={"locale": "xx"}, headers=world["headers"]["buyer"])
    assert refused.status_code == 422
    assert client.get(f"/v1/orders/{identifier}", headers=world["headers"]["buyer"]).json()["locale"] == "en"


def test_an_order_takes_the_event_s_locale_and_the_buyer_may_change_it_while_it_is_theirs(
        client: TestClient, world: dict[str, Any]) -> None:
    buyer = world["headers"]["buyer"]
    assert new_order(client, world).json()["locale"] == "en"  # the event's
    order = new_order(client, world, locale="ja").json()
    assert order["locale"] == "ja"
    url = f"/v1/orders/{order['identifier']}"
    changed = client.patch(url, json={"locale": "fr-CA"}, headers=buyer)
    assert changed.status_code == 200 and changed.json()["locale"] == "fr-CA"
    assert changed.json()["history"][-1]["detail"] == {"previous": "ja", "locale": "fr-CA"}
    # With the form, in one request: the confirmation it queues is in the new language.
    submitted = client.patch(url, json={**FORM, "locale": "es"}, headers=buyer)
    assert submitted.status_code == 200 and submitted.json()["locale"] == "es"
    assert submitted.json()["status"] == "placed"
    refused = client.patch(url, json={"locale": "de"}, headers=buyer)  # placed: no longer the buyer's to edit
    assert refused.status_code == 403
    assert only_error(refused)["detail"] == "You cannot update a non-initialized or non-pending order"
    assert client.get(url, headers=buyer).json()["locale"] == "es"
    # The event's organizers may, until the order ends: the next resend goes out in the new language.
    coorg = world["headers"]["coorg"]
    assert client.patch(url, json={"locale": "de"}, headers=coorg).json()["locale"] == "de"
    assert client.patch(url, json={"status": "cancelled"}, headers=coorg).status_code == 200
    frozen = client.patch(url, json={"locale": "en"}, headers=coorg)
    assert frozen.status_code == 403
    assert only_error(frozen)["detail"] == "The language of a cancelled or expired order no longer changes"
    stranger = client.patch(f"/v1/orders/{world['orders']['pending']}", json={"locale": "de"},
                            headers=world["headers"]["stranger"])
    assert stranger.status_code in (403, 404)
    assert client.patch(f"/v1/orders/{world['orders']['pending']}", json={"locale": "de"},
                        headers=buyer).json()["locale"] == "de"
    both = client.patch(f"/v1/orders/{world['orders']['pending']}", json={"locale": "fr", "status": "completed"},
                        headers=world["headers"]["coorg"])
    assert both.status_code == 422
